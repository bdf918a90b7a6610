//! The RabbitMQ bus. Names (DESIGN.md): exchange `chat.C` (direct), and per
//! node a queue `chat.C.P` bound with routing key `P`, so a node that comes
//! back on the same port takes back the same queue.
//!
//! A supervisor task owns the connection: it connects, declares, consumes,
//! and when the broker goes away it marks the bus not ready and reconnects
//! with backoff, re-declaring everything. While disconnected, publish fails
//! fast.
//!
//! The broker can also close one channel and leave the connection up (404
//! when the exchange is deleted under a publish, 403, 406 for a message too
//! big). The supervisor watches both channels: a dead consuming channel
//! means a new connection; a dead publishing channel is replaced on the
//! same connection, the topology declared again first (the exchange may be
//! what went missing), and the bus is not ready until it is. Every node
//! also re-declares the exchange and its binding every
//! [`TOPOLOGY_REFRESH`], so a deleted exchange comes back with the bindings
//! of all nodes, not only of the ones that happened to publish.
//!
//! Publishing never waits on the broker in a client's connection task: it
//! queues the envelope in an outbox. One publisher task takes everything
//! that queued up, coalesces it into as few broker messages per destination
//! node as [`coalesce::Limits::BROKER`] allows (order kept), publishes those
//! on a channel with publisher confirms and awaits the confirms; meanwhile
//! the next batch queues up. Under load one broker message carries many
//! deliveries, which is what keeps the broker's CPU in check; when idle a
//! delivery goes out at once.
//!
//! Deliveries are best effort (the inbox is the truth), so the queue bounds
//! what can pile up for a node that is gone: messages expire after a minute
//! and the queue keeps at most 100,000 broker messages and 64 MiB of them
//! (the oldest dropped first). A queue declared by an earlier version,
//! without the byte bound, refuses the new arguments (406); the node then
//! deletes it, unless it has a consumer, and declares it again (see
//! [`connect`]). Publishes are not mandatory: lapin
//! logs a returned message whole at warn (message bodies in the log) and
//! keeps the returns of confirms it no longer waits for, so a publish that
//! reaches no queue (a node gone, a binding not yet back) counts as
//! published.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use parley_cluster::names::{exchange_name, queue_name, routing_key};

use crate::shutdown::{Listener, Signal};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::coalesce::{self, Coalesced};
use super::{Bus, BusError, BusMetrics, Envelope, Event, Inbound};

/// How long an undelivered event may wait in a node's queue.
const MESSAGE_TTL_MS: u32 = 60_000;
/// Most broker messages a node's queue holds (oldest dropped first).
const MAX_QUEUE_LENGTH: u32 = 100_000;
/// Most bytes of message bodies a node's queue holds (oldest dropped
/// first): 100,000 coalesced messages of up to 4 MiB would be 400 GB of
/// the broker's memory. The same bound as the outbox.
const MAX_QUEUE_BYTES: u32 = 64 << 20;
/// How long to wait for the broker to confirm a publish.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Envelopes that may wait in the outbox; beyond that the broker is too
/// slow and publish fails fast (the inbox is the truth).
const OUTBOX_CAPACITY: usize = 65_536;
/// Bytes of events that may wait in the outbox (a count alone would let
/// 65,536 large frames pile up); beyond that publish fails fast too.
const OUTBOX_MAX_BYTES: usize = 64 << 20;
/// Most envelopes taken from the outbox in one batch.
const MAX_BATCH_ENVELOPES: usize = 4096;
/// How often the supervisor looks at both channels (a local read; the
/// publisher also wakes it as soon as a publish fails).
const CHANNEL_CHECK: Duration = Duration::from_secs(1);
/// How often a node declares the exchange and its queue's binding again,
/// so both come back after someone deleted the exchange.
pub const TOPOLOGY_REFRESH: Duration = Duration::from_secs(5);
/// Backoff between attempts, for the connection and for the publishing
/// channel alike.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A publishing channel that lived this long resets its backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Longest wait for the broker to answer a declaration or open a channel
/// while consuming (lapin has no timeout of its own): a broker that stops
/// answering means a new connection, not a stuck supervisor.
const BROKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection attempt may take, with its declarations, purge,
/// consumer and publishing channel (lapin bounds none of them).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The arguments every node declares its queue with (they must match on
/// every re-declaration).
pub fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongUInt(MESSAGE_TTL_MS));
    args.insert("x-max-length".into(), AMQPValue::LongUInt(MAX_QUEUE_LENGTH));
    args.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongUInt(MAX_QUEUE_BYTES),
    );
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
    /// Connected, and the consuming channel is up.
    ready: AtomicBool,
    /// Woken by the publisher task when its channel failed under it.
    publisher_failed: Notify,
    /// Bytes waiting in the outbox.
    outbox_bytes: ByteBudget,
}

/// Bytes taken from a fixed budget and given back.
struct ByteBudget {
    used: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl ByteBudget {
    fn new(max: usize) -> Self {
        ByteBudget {
            used: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// Takes `n` bytes, unless that would pass the budget.
    fn take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before + n > self.max {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

fn envelope_len(e: &Envelope) -> usize {
    e.events.iter().map(Event::payload_len).sum()
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
            publisher_failed: Notify::new(),
            outbox_bytes: ByteBudget::new(OUTBOX_MAX_BYTES),
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

    /// Replaces the publishing channel; returns the one it replaced.
    fn set_publisher(&self, channel: Option<Channel>) -> Option<Channel> {
        std::mem::replace(
            &mut *self.publisher.write().unwrap_or_else(|p| p.into_inner()),
            channel,
        )
    }

    /// Whether a publish can reach the broker now: connected, consuming,
    /// and the publishing channel open (the broker may have closed it a
    /// moment ago, before the supervisor saw it).
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && self.publisher().is_some_and(|c| c.status().connected())
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
        shared
            .outbox_bytes
            .give_back(batch.iter().map(|(_, e)| envelope_len(e)).sum());
        let Coalesced {
            messages,
            oversized,
        } = coalesce::coalesce(batch.drain(..), coalesce::Limits::BROKER);
        for (port, bytes) in oversized {
            metrics.errors.inc();
            tracing::warn!(
                port,
                bytes,
                max = coalesce::MAX_MESSAGE_BYTES,
                "dropping a delivery too big for a broker message"
            );
        }
        publish_confirmed(&shared, messages, &metrics).await;
        if shared.publisher().is_some_and(|c| !c.status().connected()) {
            shared.publisher_failed.notify_one();
        }
    }
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
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
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
        // Bounded: a broker under a memory or disk alarm blocks publishers,
        // and this task publishes for every session of the node.
        let published = tokio::time::timeout_at(
            deadline,
            ch.basic_publish(
                exchange.as_str().into(),
                routing_key(*port).as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                BasicProperties::default(),
            ),
        )
        .await;
        match published {
            Ok(Ok(confirm)) => pending.push((*port, n, confirm)),
            Ok(Err(e)) => {
                metrics.errors.inc_by(n);
                tracing::warn!(error = %e, port, "cannot publish to node");
            }
            Err(_) => {
                metrics.errors.inc_by(n);
                tracing::warn!(port, "the broker did not take a publish in time");
            }
        }
    }
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

/// What one connection to the broker is made of.
struct Link {
    conn: Connection,
    /// Declares and consumes.
    channel: Channel,
    /// Publishes, with confirms.
    publisher: Channel,
    consumer: lapin::Consumer,
}

/// Keeps the node connected until told to stop.
async fn supervise(shared: Arc<Shared>, inbound: Arc<dyn Inbound>, mut stop: Listener) {
    let mut first = true;
    let mut backoff = MIN_BACKOFF;
    loop {
        // Bounded like every other answer of the broker: one that takes the
        // TCP connection and then says nothing gets a fresh attempt.
        let connected = tokio::select! {
            c = tokio::time::timeout(CONNECT_TIMEOUT, connect(&shared.cfg, first)) => c,
            _ = stop.wait() => return,
        };
        let connected = match connected {
            Ok(c) => c.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
        };
        match connected {
            Ok(link) => {
                first = false;
                backoff = MIN_BACKOFF;
                let Link {
                    conn,
                    channel,
                    publisher,
                    consumer,
                } = link;
                shared.set_publisher(Some(publisher));
                shared.ready.store(true, Ordering::SeqCst);
                tracing::info!(queue = %queue_name(&shared.cfg.cluster, shared.cfg.port), "bus connected");
                let stopped = serve(&shared, &conn, &channel, consumer, &inbound, &mut stop).await;
                shared.ready.store(false, Ordering::SeqCst);
                let publisher = shared.set_publisher(None);
                // Channels first: closing the connection under open
                // channels makes lapin log a spurious error when their
                // handles drop. Bounded: the broker may be gone.
                let why = if stopped {
                    "node stopping"
                } else {
                    "reconnecting"
                };
                let close = async {
                    let _ = channel.close(200, why.into()).await;
                    if let Some(p) = publisher {
                        let _ = p.close(200, why.into()).await;
                    }
                    let _ = conn.close(200, why.into()).await;
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
                if stopped {
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
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Serves one connection: hands incoming envelopes to `inbound`, replaces
/// the publishing channel when the broker closes it, and declares the
/// topology again every [`TOPOLOGY_REFRESH`]. Returns true when the node
/// stops, false when the connection must be made anew (it failed, or the
/// consuming channel did).
async fn serve(
    shared: &Shared,
    conn: &Connection,
    channel: &Channel,
    mut consumer: lapin::Consumer,
    inbound: &Arc<dyn Inbound>,
    stop: &mut Listener,
) -> bool {
    let mut check = tokio::time::interval(CHANNEL_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = tokio::time::interval_at(Instant::now() + TOPOLOGY_REFRESH, TOPOLOGY_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When to open a new publishing channel (the old one is dead).
    let mut renew: Option<Instant> = None;
    let mut renew_backoff = MIN_BACKOFF;
    let mut renewed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            d = consumer.next() => match d {
                Some(Ok(d)) => receive(shared, &d.data, inbound),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "bus consumer failed");
                    return false;
                }
                None => {
                    tracing::warn!("bus consumer cancelled (queue deleted?)");
                    return false;
                }
            },
            _ = stop.wait() => return true,
            _ = shared.publisher_failed.notified() => {}
            _ = check.tick() => {}
            _ = refresh.tick() => {
                match tokio::time::timeout(BROKER_ANSWER_TIMEOUT, declare(channel, &shared.cfg)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot declare the bus topology again");
                        return false;
                    }
                    Err(_) => {
                        tracing::warn!("the broker did not answer a declaration in time");
                        return false;
                    }
                }
            }
            _ = tokio::time::sleep_until(renew.unwrap_or_else(Instant::now)), if renew.is_some() => {
                renew = None;
                let opened = tokio::time::timeout(
                    BROKER_ANSWER_TIMEOUT,
                    open_publisher(conn, channel, &shared.cfg),
                );
                match opened.await {
                    Ok(Ok(p)) => {
                        shared.set_publisher(Some(p));
                        renewed_at = Some(Instant::now());
                        tracing::info!("bus publishing channel open again");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot open a new publishing channel");
                        return false;
                    }
                    Err(_) => {
                        tracing::warn!("the broker did not open a publishing channel in time");
                        return false;
                    }
                }
            }
        }
        if !conn.status().connected() || !channel.status().connected() {
            tracing::warn!("bus connection or consuming channel closed");
            return false;
        }
        let publishing = shared.publisher().is_some_and(|c| c.status().connected());
        if !publishing && renew.is_none() {
            // Closed by the broker: deliveries fail fast (the bus reads not
            // ready) until a new channel is open.
            if let Some(old) = shared.set_publisher(None) {
                tracing::warn!(
                    channel = old.id(),
                    "bus publishing channel closed by the broker"
                );
            }
            renew_backoff = if renewed_at.is_some_and(|t| t.elapsed() < STABLE_AFTER) {
                (renew_backoff * 2).min(MAX_BACKOFF)
            } else {
                MIN_BACKOFF
            };
            renew = Some(Instant::now() + renew_backoff);
        }
    }
}

/// One broker message for this node: its events go to `inbound`, unless
/// they were meant for a previous run of it.
fn receive(shared: &Shared, data: &[u8], inbound: &Arc<dyn Inbound>) {
    let envelope = match Envelope::decode(data) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a malformed bus message");
            return;
        }
    };
    if envelope.instance != shared.cfg.instance {
        tracing::debug!(for_instance = %envelope.instance, "dropping a delivery for a previous run");
        return;
    }
    for event in envelope.events {
        inbound.receive(event);
    }
}

/// Connects and declares the exchange, this node's queue and its binding;
/// returns the connection, the consuming channel, the publishing channel
/// (with confirms) and the consumer.
///
/// A queue an earlier version declared with other arguments (before the
/// byte bound) makes the broker refuse the declaration with 406
/// PRECONDITION_FAILED and close the channel. The queue is then deleted
/// with if-unused and declared again: what waits in it is best effort (the
/// inbox is the truth), and it is dropped on a first connect anyway. A
/// queue with a consumer (a run of an earlier version still on this port)
/// is left alone: the delete is refused, the connection fails, and the
/// supervisor tries again with backoff.
async fn connect(cfg: &RabbitConfig, first: bool) -> Result<Link, lapin::Error> {
    let conn = Connection::connect(&cfg.url, ConnectionProperties::default()).await?;
    let mut ch = conn.create_channel().await?;
    declare_exchange(&ch, cfg).await?;
    let queue = queue_name(&cfg.cluster, cfg.port);
    match declare_queue(&ch, cfg).await {
        Ok(()) => {}
        Err(e) if reply_code(&e) == Some(PRECONDITION_FAILED) => {
            tracing::warn!(
                queue,
                error = %e,
                "the queue was declared with other arguments: deleting it (if unused) and declaring it again"
            );
            ch = conn.create_channel().await?;
            let unused = QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            };
            let dropped = ch.queue_delete(queue.as_str().into(), unused).await?;
            tracing::info!(queue, dropped, "deleted the queue to declare it again");
            declare_queue(&ch, cfg).await?;
        }
        Err(e) => return Err(e),
    }
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
    Ok(Link {
        conn,
        channel: ch,
        publisher,
        consumer,
    })
}

/// Declares the exchange, this node's queue and its binding (idempotent:
/// the same arguments every time).
async fn declare(ch: &Channel, cfg: &RabbitConfig) -> Result<(), lapin::Error> {
    declare_exchange(ch, cfg).await?;
    declare_queue(ch, cfg).await
}

async fn declare_exchange(ch: &Channel, cfg: &RabbitConfig) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        exchange_name(&cfg.cluster).as_str().into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
}

/// Declares this node's queue with [`queue_arguments`] and binds it.
async fn declare_queue(ch: &Channel, cfg: &RabbitConfig) -> Result<(), lapin::Error> {
    let exchange = exchange_name(&cfg.cluster);
    let queue = queue_name(&cfg.cluster, cfg.port);
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
    .await
}

/// AMQP 0-9-1's reply code for arguments that do not match what exists
/// (and for an if-unused delete of a queue in use).
const PRECONDITION_FAILED: u16 = 406;

/// The broker's reply code of a channel or connection error, if it sent one.
fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// A new publishing channel on `conn`, after declaring the topology again
/// on `ch` (a publish to a deleted exchange is what closes a publishing
/// channel with 404).
async fn open_publisher(
    conn: &Connection,
    ch: &Channel,
    cfg: &RabbitConfig,
) -> Result<Channel, lapin::Error> {
    declare(ch, cfg).await?;
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(publisher)
}

#[async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, port: u16, envelope: Envelope) -> Result<(), BusError> {
        if !self.ready() {
            return Err(BusError::Unavailable("not connected to RabbitMQ".into()));
        }
        let bytes = envelope_len(&envelope);
        if !self.shared.outbox_bytes.take(bytes) {
            return Err(BusError::Unavailable(
                "the broker is not keeping up; outbox full (bytes)".into(),
            ));
        }
        self.outbox.try_send((port, envelope)).map_err(|e| {
            self.shared.outbox_bytes.give_back(bytes);
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    BusError::Unavailable("the broker is not keeping up; outbox full".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    BusError::Unavailable("the bus is shut down".into())
                }
            }
        })
    }

    fn ready(&self) -> bool {
        self.shared.ready()
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

    #[test]
    fn the_outbox_budget_refuses_what_would_pass_it_and_takes_back() {
        let b = ByteBudget::new(100);
        assert!(b.take(60));
        assert!(!b.take(41), "60 + 41 would pass 100");
        assert!(b.take(40));
        b.give_back(60);
        assert!(b.take(60));
        assert!(!b.take(1));
    }
}
