//! The RabbitMQ bus. Names (DESIGN.md): exchange `chat.C` (direct), and per
//! node a queue `chat.C.P` bound with routing key `P`, so a node that comes
//! back on the same port takes back the same queue.
//!
//! A supervisor task owns the connection: it connects, declares, consumes,
//! and when the broker goes away it marks the bus not ready and reconnects
//! with backoff, re-declaring everything. While disconnected, publish fails
//! fast.
//!
//! Publishing never waits on the broker in a client's connection task: it
//! queues the envelope in an outbox. One publisher task takes everything
//! that queued up, coalesces it into one broker message per destination
//! node (order kept), publishes those on a channel with publisher confirms
//! and awaits the confirms; meanwhile the next batch queues up. Under load
//! one broker message carries many deliveries, which is what keeps the
//! broker's CPU in check; when idle a delivery goes out at once.
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
use parley_cluster::names::{exchange_name, queue_name, routing_key};

use crate::shutdown::{Listener, Signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Bus, BusError, BusMetrics, Envelope, Inbound};

/// How long an undelivered event may wait in a node's queue.
const MESSAGE_TTL_MS: u32 = 60_000;
/// Most events a node's queue holds (oldest dropped first).
const MAX_QUEUE_LENGTH: u32 = 100_000;
/// How long to wait for the broker to confirm a publish.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Envelopes that may wait in the outbox; beyond that the broker is too
/// slow and publish fails fast (the inbox is the truth).
const OUTBOX_CAPACITY: usize = 65_536;
/// Most envelopes taken from the outbox in one batch.
const MAX_BATCH_ENVELOPES: usize = 4096;
/// Most events in one broker message.
const MAX_EVENTS_PER_MESSAGE: usize = 512;

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
    outbox: mpsc::Sender<(u16, Envelope)>,
    stop: Signal,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl RabbitBus {
    /// Starts the supervisor and the publisher; events for this node go to
    /// `inbound`.
    pub fn start(cfg: RabbitConfig, inbound: Arc<dyn Inbound>, metrics: BusMetrics) -> RabbitBus {
        let shared = Arc::new(Shared {
            cfg,
            publisher: RwLock::new(None),
            ready: AtomicBool::new(false),
        });
        let stop = Signal::default();
        let stop_rx = stop.listen();
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let tasks = vec![
            tokio::spawn(supervise(shared.clone(), inbound, stop_rx.clone())),
            tokio::spawn(publish_loop(shared.clone(), outbox_rx, metrics, stop_rx)),
        ];
        RabbitBus {
            shared,
            outbox,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        }
    }
}

impl Shared {
    fn publisher(&self) -> Option<Channel> {
        self.publisher
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Publishes what queues up in the outbox, a batch at a time, until the
/// node stops.
async fn publish_loop(
    shared: Arc<Shared>,
    mut outbox: mpsc::Receiver<(u16, Envelope)>,
    metrics: BusMetrics,
    mut stop: Listener,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH_ENVELOPES);
    loop {
        let n = tokio::select! {
            n = outbox.recv_many(&mut batch, MAX_BATCH_ENVELOPES) => n,
            _ = stop.wait() => return,
        };
        if n == 0 {
            return;
        }
        let messages = coalesce(batch.drain(..), MAX_EVENTS_PER_MESSAGE);
        publish_confirmed(&shared, messages, &metrics).await;
    }
}

/// Merges envelopes into as few as possible per destination node: an
/// envelope joins the previous one for its port when both are for the same
/// run of that node and the result stays under `max_events`. Events for one
/// node keep their order.
pub fn coalesce(
    envelopes: impl IntoIterator<Item = (u16, Envelope)>,
    max_events: usize,
) -> Vec<(u16, Envelope)> {
    let mut out: Vec<(u16, Envelope)> = Vec::new();
    let mut open: std::collections::HashMap<u16, usize> = std::collections::HashMap::new();
    for (port, envelope) in envelopes {
        if let Some(&i) = open.get(&port) {
            let last = &mut out[i].1;
            if last.instance == envelope.instance
                && last.events.len() + envelope.events.len() <= max_events
            {
                last.events.extend(envelope.events);
                continue;
            }
        }
        open.insert(port, out.len());
        out.push((port, envelope));
    }
    out
}

/// Publishes one broker message per envelope, then waits for the broker to
/// confirm them all; counts what was confirmed and what was lost.
async fn publish_confirmed(shared: &Shared, messages: Vec<(u16, Envelope)>, metrics: &BusMetrics) {
    let events = |m: &[(u16, Envelope)]| m.iter().map(|(_, e)| e.events.len() as u64).sum();
    let Some(ch) = shared.publisher() else {
        metrics.errors.inc_by(events(&messages));
        tracing::warn!("not connected to RabbitMQ; deliveries to other nodes dropped");
        return;
    };
    let exchange = exchange_name(&shared.cfg.cluster);
    let mut pending = Vec::with_capacity(messages.len());
    for (port, envelope) in &messages {
        let n = envelope.events.len() as u64;
        let payload = match serde_json::to_vec(envelope) {
            Ok(p) => p,
            Err(e) => {
                metrics.errors.inc_by(n);
                tracing::warn!(error = %e, "cannot encode an envelope");
                continue;
            }
        };
        let published = ch
            .basic_publish(
                exchange.as_str().into(),
                routing_key(*port).as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                BasicProperties::default(),
            )
            .await;
        match published {
            Ok(confirm) => pending.push((*port, n, confirm)),
            Err(e) => {
                metrics.errors.inc_by(n);
                tracing::warn!(error = %e, port, "cannot publish to node");
            }
        }
    }
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    for (port, n, confirm) in pending {
        let failure = match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(Confirmation::Ack(_))) | Ok(Ok(Confirmation::NotRequested)) => {
                metrics.events.inc_by(n);
                metrics.messages.inc();
                continue;
            }
            Ok(Ok(Confirmation::Nack(_))) => "broker refused the delivery".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "broker did not confirm in time".to_owned(),
        };
        metrics.errors.inc_by(n);
        tracing::warn!(error = %failure, port, "cannot publish to node");
    }
}

/// Keeps the node connected until told to stop.
async fn supervise(shared: Arc<Shared>, inbound: Arc<dyn Inbound>, mut stop: Listener) {
    let mut first = true;
    let mut backoff = Duration::from_millis(200);
    loop {
        match connect(&shared.cfg, first).await {
            Ok((conn, channel, publisher, consumer)) => {
                first = false;
                backoff = Duration::from_millis(200);
                *shared.publisher.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(publisher.clone());
                shared.ready.store(true, Ordering::SeqCst);
                tracing::info!(queue = %queue_name(&shared.cfg.cluster, shared.cfg.port), "bus connected");
                let stopped = consume(&shared, consumer, &inbound, &mut stop).await;
                shared.ready.store(false, Ordering::SeqCst);
                *shared.publisher.write().unwrap_or_else(|p| p.into_inner()) = None;
                if stopped {
                    // Channels first: closing the connection under open
                    // channels makes lapin log a spurious error when their
                    // handles drop.
                    let _ = channel.close(200, "node stopping".into()).await;
                    let _ = publisher.close(200, "node stopping".into()).await;
                    let _ = conn.close(200, "node stopping".into()).await;
                    return;
                }
                tracing::warn!("bus connection lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to RabbitMQ; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Connects and declares the exchange, this node's queue and its binding;
/// returns the connection, the consuming channel, the publishing channel
/// (with confirms) and the consumer.
async fn connect(
    cfg: &RabbitConfig,
    first: bool,
) -> Result<(Connection, Channel, Channel, lapin::Consumer), lapin::Error> {
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
        routing_key(cfg.port).as_str().into(),
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
    Ok((conn, ch, publisher, consumer))
}

/// Hands incoming envelopes to `inbound` until the connection fails
/// (returns false) or the node stops (returns true).
async fn consume(
    shared: &Shared,
    mut consumer: lapin::Consumer,
    inbound: &Arc<dyn Inbound>,
    stop: &mut Listener,
) -> bool {
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait() => return true,
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
            inbound.receive(event);
        }
    }
}

#[async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, port: u16, envelope: Envelope) -> Result<(), BusError> {
        if !self.ready() {
            return Err(BusError::Unavailable("not connected to RabbitMQ".into()));
        }
        self.outbox.try_send((port, envelope)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                BusError::Unavailable("the broker is not keeping up; outbox full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                BusError::Unavailable("the bus is shut down".into())
            }
        })
    }

    fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst)
    }

    fn is_local(&self) -> bool {
        false
    }

    async fn shutdown(&self) {
        self.stop.set();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(instance: &str, users: &[&str]) -> Envelope {
        Envelope {
            instance: instance.into(),
            events: users
                .iter()
                .map(|u| super::super::Event::Kick {
                    user: (*u).into(),
                    token_hash: "h".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn coalesce_merges_per_node_in_order() {
        let batch = vec![
            (8760, env("i1", &["a"])),
            (8770, env("i2", &["b"])),
            (8760, env("i1", &["c", "d"])),
            (8770, env("i2", &["e"])),
        ];
        assert_eq!(
            coalesce(batch, 512),
            vec![
                (8760, env("i1", &["a", "c", "d"])),
                (8770, env("i2", &["b", "e"])),
            ]
        );
    }

    #[test]
    fn coalesce_keeps_runs_apart_and_bounds_messages() {
        // A node that restarted (new instance) gets a separate envelope, after
        // the one for its previous run.
        let batch = vec![
            (8760, env("old", &["a"])),
            (8760, env("new", &["b"])),
            (8760, env("new", &["c"])),
        ];
        assert_eq!(
            coalesce(batch, 512),
            vec![(8760, env("old", &["a"])), (8760, env("new", &["b", "c"]))]
        );
        let batch = vec![
            (8760, env("i", &["a", "b"])),
            (8760, env("i", &["c", "d"])),
            (8760, env("i", &["e"])),
        ];
        assert_eq!(
            coalesce(batch, 3),
            vec![
                (8760, env("i", &["a", "b"])),
                (8760, env("i", &["c", "d", "e"]))
            ]
        );
    }

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope {
            instance: "i-1".into(),
            events: vec![
                super::super::Event::Deliver(super::super::Delivery {
                    user: "bob".into(),
                    frame: r#"{"type":"msg"}"#.into(),
                    except: Some("s-1".into()),
                    message: true,
                }),
                super::super::Event::Kick {
                    user: "bob".into(),
                    token_hash: "ab".into(),
                },
            ],
        };
        let back: Envelope = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn envelope_wire_format_is_stable_across_versions() {
        // Nodes of two versions share a bus during a rolling upgrade.
        let wire = r#"{"instance":"i","events":[{"t":"deliver","user":"bob","frame":"{}","except":"s-1","message":true},{"t":"deliver","user":"al","frame":"x"},{"t":"kick","user":"bob","token_hash":"h"}]}"#;
        let e: Envelope = serde_json::from_str(wire).unwrap();
        assert_eq!(
            serde_json::to_string(&e)
                .unwrap()
                .replace(r#","message":false"#, ""),
            wire
        );
    }
}
