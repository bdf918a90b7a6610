//! Talking to the backends for garbage collection: check they answer,
//! observe what runs left behind, carry out a plan, and wipe a cluster on
//! deletion. Queues are deleted with `if-unused`: a queue with a consumer
//! cannot be deleted, whatever the plan believes; nor can a feed consumer
//! (archive or push) that holds pending entries.
//!
//! A `Backends` keeps its connections (the operator caches one per
//! ChatCluster): Redis through a reconnecting connection manager, RabbitMQ
//! through one connection that is opened again only when it has failed, so
//! reconciling every 30 s does not churn broker connections.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use parley_cluster::archive::{consumer_name, parse_consumer};
use parley_cluster::gc::{ConsumerRemoval, Feed};
use parley_cluster::names::{exchange_name, queue_name};
use parley_cluster::{NodeRecord, PortFormula, Registry, RegistryError};

use super::plan::{Action, Observed, PortState};

/// How long to wait for a backend before calling it unavailable.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A backend failure during collection.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Redis(#[from] RegistryError),
    #[error("RabbitMQ: {0}")]
    Rabbit(String),
}

/// Redis and RabbitMQ of one chat cluster.
pub struct Backends {
    pub cluster: String,
    redis: Registry,
    redis_url: String,
    amqp_url: String,
    /// The RabbitMQ connection, kept between calls; `None` until first used
    /// and after it failed.
    amqp: tokio::sync::Mutex<Option<Connection>>,
    amqp_opened: AtomicU64,
}

/// What a plan's execution did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub queues: u64,
    pub registry: u64,
    pub presence: u64,
    /// Consumers removed from the archive feed's group.
    pub consumers: u64,
    /// Actions not carried out, with why (a queue in use, say).
    pub skipped: Vec<(Action, String)>,
}

impl Backends {
    pub fn new(cluster: &str, redis_url: &str, amqp_url: &str) -> Result<Backends, BackendError> {
        let conn = parley_cluster::registry::connect(redis_url, BACKEND_TIMEOUT)?;
        Ok(Backends {
            cluster: cluster.to_owned(),
            redis: Registry::new(conn, cluster),
            redis_url: redis_url.to_owned(),
            amqp_url: amqp_url.to_owned(),
            amqp: tokio::sync::Mutex::new(None),
            amqp_opened: AtomicU64::new(0),
        })
    }

    /// Whether these are the backends of `cluster` at these addresses.
    pub fn is_for(&self, cluster: &str, redis_url: &str, amqp_url: &str) -> bool {
        self.cluster == cluster && self.redis_url == redis_url && self.amqp_url == amqp_url
    }

    /// RabbitMQ connections opened so far (1 while the first one lasts).
    pub fn amqp_connections_opened(&self) -> u64 {
        self.amqp_opened.load(Ordering::Relaxed)
    }

    /// Closes the RabbitMQ connection (when the cluster is gone).
    pub async fn close(&self) {
        if let Some(c) = self.amqp.lock().await.take() {
            let _ = timed("close connection", c.close(200, "cluster gone".into())).await;
        }
    }

    /// The node registry (for status: addresses, readiness, online counts).
    pub async fn registry(&self) -> Result<Vec<NodeRecord>, BackendError> {
        Ok(self.redis.nodes().await?)
    }

    /// Whether Redis answers.
    pub async fn redis_available(&self) -> Result<(), BackendError> {
        Ok(self.redis.ping().await?)
    }

    /// Whether RabbitMQ answers: a channel opened and closed on the kept
    /// connection (a round trip, so a broker that went away is noticed).
    pub async fn rabbit_available(&self) -> Result<(), BackendError> {
        let guard = self.connection().await?;
        let conn = guard.as_ref().expect("connection() leaves one in place");
        let opened = tokio::time::timeout(BACKEND_TIMEOUT, conn.create_channel()).await;
        match opened {
            Ok(Ok(ch)) => {
                let _ = timed("close channel", ch.close(200, "check".into())).await;
                Ok(())
            }
            failed => {
                drop(guard);
                self.amqp.lock().await.take();
                Err(BackendError::Rabbit(match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer in time".into(),
                }))
            }
        }
    }

    /// The kept RabbitMQ connection, opened again when there is none or it
    /// failed. Holds the lock: one user at a time.
    async fn connection(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Connection>>, BackendError> {
        let mut guard = self.amqp.lock().await;
        if guard.as_ref().is_some_and(|c| c.status().connected()) {
            return Ok(guard);
        }
        let rabbit = |e: &dyn std::fmt::Display| BackendError::Rabbit(e.to_string());
        let conn = match tokio::time::timeout(
            BACKEND_TIMEOUT,
            Connection::connect(&self.amqp_url, ConnectionProperties::default()),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(rabbit(&e)),
            Err(_) => return Err(BackendError::Rabbit("connection timed out".into())),
        };
        self.amqp_opened.fetch_add(1, Ordering::Relaxed);
        *guard = Some(conn);
        Ok(guard)
    }

    /// What the backends hold for this cluster, with the cluster's size and
    /// pods, ready for [`super::plan`].
    pub async fn observe(
        &self,
        replicas: u32,
        formula: Option<PortFormula>,
        pods: BTreeMap<u32, String>,
    ) -> Result<Observed, BackendError> {
        let snapshot = self.redis.registry_snapshot().await?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let fresh_runs = self
            .redis
            .nodes()
            .await?
            .into_iter()
            .filter(|n| !n.instance.is_empty() && n.heartbeat_fresh(now_ms))
            .map(|n| n.instance)
            .collect();
        let mut ports = BTreeMap::new();
        for port in snapshot.ports {
            let runs = self.redis.node_runs(port).await?;
            let queue = snapshot.queue_ports.contains(&port);
            ports.insert(port, PortState { runs, queue });
        }
        let mut feed_consumers = BTreeSet::new();
        for feed in Feed::ALL {
            let names = self.redis.feed_consumers(feed).await?;
            feed_consumers.extend(names.into_iter().map(|c| c.name));
        }
        Ok(Observed {
            replicas,
            formula,
            pods,
            fresh_runs,
            ports,
            feed_consumers,
        })
    }

    /// Carries out a plan. A port whose queue cannot be deleted (in use)
    /// keeps everything else too; the next reconcile looks again.
    pub async fn execute(&self, plan: &[Action]) -> Result<Collected, BackendError> {
        let mut done = Collected::default();
        let mut blocked: BTreeSet<u16> = BTreeSet::new();
        let mut conn = None;
        for action in plan {
            if blocked.contains(&action.port()) {
                done.skipped
                    .push((action.clone(), "its queue is still in use".into()));
                continue;
            }
            match action {
                Action::DeleteQueue { port } => {
                    if conn.is_none() {
                        conn = Some(self.connection().await?);
                    }
                    let c = conn
                        .as_ref()
                        .and_then(|g| g.as_ref())
                        .expect("connected above");
                    match delete_queue_if_unused(c, &queue_name(&self.cluster, *port)).await? {
                        QueueDeleted::Deleted | QueueDeleted::Missing => done.queues += 1,
                        QueueDeleted::InUse => {
                            blocked.insert(*port);
                            done.skipped
                                .push((action.clone(), "the queue has a consumer".into()));
                        }
                    }
                }
                Action::RetireRun { port, instance } => {
                    let r = self.redis.retire_run(*port, instance).await?;
                    done.registry += r.registry;
                    done.presence += r.presence;
                }
                Action::ResetRun { port, instance } => {
                    let r = self.redis.reset_run(*port, instance).await?;
                    done.presence += r.presence;
                }
                Action::ForgetPort { port } => self.redis.forget_port(*port).await?,
                Action::DeleteConsumer { port, instance } => {
                    let name = consumer_name(*port, instance);
                    for feed in Feed::ALL {
                        match self.redis.remove_feed_consumer(feed, &name).await? {
                            ConsumerRemoval::Removed => done.consumers += 1,
                            ConsumerRemoval::Absent => {}
                            ConsumerRemoval::Pending(n) => done
                                .skipped
                                .push((action.clone(), pending_entries(feed, n))),
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    /// Removes the cluster's queues, exchange and registry; with
    /// `delete_data`, every key of the cluster (messages, inboxes, tokens).
    /// Fails while a queue is still in use (its node has not stopped yet).
    pub async fn wipe(&self, delete_data: bool) -> Result<Collected, BackendError> {
        let mut done = Collected::default();
        let snapshot = self.redis.registry_snapshot().await?;
        let guard = self.connection().await?;
        let conn = guard.as_ref().expect("connection() leaves one in place");
        for port in &snapshot.ports {
            match delete_queue_if_unused(conn, &queue_name(&self.cluster, *port)).await? {
                QueueDeleted::Deleted | QueueDeleted::Missing => done.queues += 1,
                QueueDeleted::InUse => {
                    return Err(BackendError::Rabbit(format!(
                        "queue of node {port} is still in use"
                    )));
                }
            }
        }
        let ch = timed("open channel", conn.create_channel())
            .await?
            .map_err(|e| rabbit("open channel", e))?;
        let x = exchange_name(&self.cluster);
        let deleted = timed(
            "exchange delete",
            ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await?;
        match deleted {
            Ok(()) => {}
            Err(e) if reply_code(&e) == Some(NOT_FOUND) => {}
            Err(e) => return Err(rabbit(&format!("delete of exchange {x}"), e)),
        }
        let _ = timed("close channel", ch.close(200, "wiped".into())).await;
        drop(guard);
        for pattern in ["presence:*", "node:*", "ports", "queues"] {
            done.registry += self.redis.delete_matching(pattern).await?;
        }
        // Every run has stopped: its feed consumers go, unless they still
        // hold entries (they stay in the feed for the next nodes of this
        // cluster id to claim; with `delete_data` the feeds go too).
        for feed in Feed::ALL {
            for c in self.redis.feed_consumers(feed).await? {
                if parse_consumer(&c.name).is_some()
                    && self.redis.remove_feed_consumer(feed, &c.name).await?
                        == ConsumerRemoval::Removed
                {
                    done.consumers += 1;
                }
            }
        }
        if delete_data {
            done.registry += self.redis.delete_matching("*").await?;
        }
        Ok(done)
    }
}

/// Why a feed consumer was kept.
fn pending_entries(feed: Feed, n: u64) -> String {
    let entries = if n == 1 { "entry" } else { "entries" };
    let (what, who) = match feed {
        Feed::Archive => ("archive", "archivers"),
        Feed::Push => ("push", "pushers"),
    };
    format!("{n} {what} {entries} pending; live {who} claim them after the claim timeout")
}

enum QueueDeleted {
    Deleted,
    Missing,
    InUse,
}

/// AMQP 0-9-1 reply codes the collection acts on.
const NOT_FOUND: u16 = 404;
const PRECONDITION_FAILED: u16 = 406;

/// The broker's reply code of a channel or connection error, if it sent one.
fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// One lapin call, bounded by [`BACKEND_TIMEOUT`]: a broker that stops
/// answering fails the call instead of hanging the reconcile.
async fn timed<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<Result<T, lapin::Error>, BackendError> {
    tokio::time::timeout(BACKEND_TIMEOUT, call)
        .await
        .map_err(|_| BackendError::Rabbit(format!("{what}: no answer in {BACKEND_TIMEOUT:?}")))
}

fn rabbit(what: &str, e: lapin::Error) -> BackendError {
    BackendError::Rabbit(format!("{what}: {e}"))
}

/// Deletes a queue unless it has consumers. Each attempt uses a channel of
/// its own: a refused declare or delete closes the channel it was sent on.
/// Only the broker's NOT_FOUND says a queue is gone; any other failure is
/// an error, so the port is kept and looked at again.
async fn delete_queue_if_unused(
    conn: &Connection,
    queue: &str,
) -> Result<QueueDeleted, BackendError> {
    let ch = timed("open channel", conn.create_channel())
        .await?
        .map_err(|e| rabbit("open channel", e))?;
    // A passive declare tells whether it exists without creating it.
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = timed(
        "passive declare",
        ch.queue_declare(queue.into(), passive, FieldTable::default()),
    )
    .await?;
    let q = match declared {
        Ok(q) => q,
        Err(e) if reply_code(&e) == Some(NOT_FOUND) => return Ok(QueueDeleted::Missing),
        Err(e) => return Err(rabbit(&format!("passive declare of {queue}"), e)),
    };
    if q.consumer_count() > 0 {
        let _ = timed("close channel", ch.close(200, "in use".into())).await;
        return Ok(QueueDeleted::InUse);
    }
    let opts = QueueDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    let result = timed("delete", ch.queue_delete(queue.into(), opts)).await?;
    let _ = timed("close channel", ch.close(200, "done".into())).await;
    match result {
        Ok(_) => Ok(QueueDeleted::Deleted),
        // if-unused refused: a consumer arrived in between.
        Err(e) if reply_code(&e) == Some(PRECONDITION_FAILED) => Ok(QueueDeleted::InUse),
        Err(e) => Err(rabbit(&format!("delete of {queue}"), e)),
    }
}
