//! The RabbitMQ bus. Names (DESIGN.md): exchange `chat.C` (direct), and per
//! node a queue `chat.C.P` bound with routing key `P`, so a node that comes
//! back on the same port takes back the same queue.
//!
//! A supervisor task owns the connection: it connects, declares, consumes,
//! and when the broker goes away it marks the bus not ready and reconnects
//! with backoff, re-declaring everything. Publishing uses a channel with
//! publisher confirms; while disconnected, publish fails fast.
//!
//! Deliveries are best effort (the inbox is the truth), so the queue bounds
//! what can pile up for a node that is gone: messages expire after a minute
//! and the queue keeps at most 100,000.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Bus, BusError, Envelope, Inbound};

/// How long an undelivered event may wait in a node's queue.
const MESSAGE_TTL_MS: u32 = 60_000;
/// Most events a node's queue holds (oldest dropped first).
const MAX_QUEUE_LENGTH: u32 = 100_000;
/// How long to wait for the broker to confirm a publish.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// The exchange of a cluster.
pub fn exchange_name(cluster: &str) -> String {
    format!("chat.{cluster}")
}

/// The queue of the node on `port`.
pub fn queue_name(cluster: &str, port: u16) -> String {
    format!("chat.{cluster}.{port}")
}

/// The arguments every node declares its queue with (they must match on
/// every re-declaration).
pub fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongUInt(MESSAGE_TTL_MS));
    args.insert("x-max-length".into(), AMQPValue::LongUInt(MAX_QUEUE_LENGTH));
    args
}

/// Where and who this node is on the bus.
#[derive(Debug, Clone)]
pub struct RabbitConfig {
    pub url: String,
    pub cluster: String,
    pub port: u16,
    pub instance: String,
}

struct Shared {
    cfg: RabbitConfig,
    publisher: RwLock<Option<Channel>>,
    ready: AtomicBool,
}

/// A node's connection to the RabbitMQ bus.
pub struct RabbitBus {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    supervisor: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl RabbitBus {
    /// Starts the supervisor; events for this node go to `inbound`.
    pub fn start(cfg: RabbitConfig, inbound: Inbound) -> RabbitBus {
        let shared = Arc::new(Shared {
            cfg,
            publisher: RwLock::new(None),
            ready: AtomicBool::new(false),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(shared.clone(), inbound, stop_rx));
        RabbitBus {
            shared,
            stop,
            supervisor: std::sync::Mutex::new(Some(task)),
        }
    }

    fn publisher(&self) -> Option<Channel> {
        self.shared
            .publisher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Keeps the node connected until told to stop.
async fn supervise(shared: Arc<Shared>, inbound: Inbound, mut stop: watch::Receiver<bool>) {
    let mut first = true;
    let mut backoff = Duration::from_millis(200);
    loop {
        match connect(&shared.cfg, first).await {
            Ok((conn, publisher, consumer)) => {
                first = false;
                backoff = Duration::from_millis(200);
                *shared.publisher.write().unwrap_or_else(|p| p.into_inner()) = Some(publisher);
                shared.ready.store(true, Ordering::SeqCst);
                tracing::info!(queue = %queue_name(&shared.cfg.cluster, shared.cfg.port), "bus connected");
                let stopped = consume(&shared, consumer, &inbound, &mut stop).await;
                shared.ready.store(false, Ordering::SeqCst);
                *shared.publisher.write().unwrap_or_else(|p| p.into_inner()) = None;
                if stopped {
                    let _ = conn.close(200, "node stopping".into()).await;
                    return;
                }
                tracing::warn!("bus connection lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to RabbitMQ; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::node::until_set(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Connects and declares the exchange, this node's queue and its binding.
async fn connect(
    cfg: &RabbitConfig,
    first: bool,
) -> Result<(Connection, Channel, lapin::Consumer), lapin::Error> {
    let conn = Connection::connect(&cfg.url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let exchange = exchange_name(&cfg.cluster);
    let queue = queue_name(&cfg.cluster, cfg.port);
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    let q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), q, queue_arguments())
        .await?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        cfg.port.to_string().as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    if first {
        // Whatever waits in the queue was meant for a previous run of this
        // node; its sessions are gone and will sync.
        let purged = ch
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await?;
        if purged > 0 {
            tracing::info!(purged, "dropped deliveries left for a previous run");
        }
    }
    let consume = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let tag = format!("chat-node-{}", cfg.instance);
    let consumer = ch
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            consume,
            FieldTable::default(),
        )
        .await?;
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((conn, publisher, consumer))
}

/// Hands incoming envelopes to `inbound` until the connection fails
/// (returns false) or the node stops (returns true).
async fn consume(
    shared: &Shared,
    mut consumer: lapin::Consumer,
    inbound: &Inbound,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = crate::node::until_set(stop) => return true,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "bus consumer failed");
                return false;
            }
            None => return false,
        };
        let envelope: Envelope = match serde_json::from_slice(&delivery.data) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a malformed bus message");
                continue;
            }
        };
        if envelope.instance != shared.cfg.instance {
            tracing::debug!(for_instance = %envelope.instance, "dropping a delivery for a previous run");
            continue;
        }
        for event in envelope.events {
            inbound(event);
        }
    }
}

#[async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, port: u16, envelope: &Envelope) -> Result<(), BusError> {
        let unavailable = |e: &dyn std::fmt::Display| BusError::Unavailable(e.to_string());
        let Some(ch) = self.publisher() else {
            return Err(BusError::Unavailable("not connected to RabbitMQ".into()));
        };
        let payload = serde_json::to_vec(envelope).map_err(|e| unavailable(&e))?;
        let exchange = exchange_name(&self.shared.cfg.cluster);
        let confirm = ch
            .basic_publish(
                exchange.as_str().into(),
                port.to_string().as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                BasicProperties::default(),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(Confirmation::Ack(_))) | Ok(Ok(Confirmation::NotRequested)) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => {
                Err(BusError::Unavailable("broker refused the delivery".into()))
            }
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(BusError::Unavailable(
                "broker did not confirm in time".into(),
            )),
        }
    }

    fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst)
    }

    fn is_local(&self) -> bool {
        false
    }

    async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = self
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        assert_eq!(exchange_name("prod"), "chat.prod");
        assert_eq!(queue_name("prod", 8760), "chat.prod.8760");
    }

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope {
            instance: "i-1".into(),
            events: vec![
                super::super::Event::Deliver {
                    user: "bob".into(),
                    frame: r#"{"type":"msg"}"#.into(),
                    except: None,
                    message: true,
                },
                super::super::Event::Kick {
                    user: "bob".into(),
                    token_hash: "ab".into(),
                },
            ],
        };
        let back: Envelope = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
