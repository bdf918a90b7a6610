//! What every connection and HTTP handler of one node shares: configuration,
//! identity, the store, the bus, the sessions, metrics, and the drain signal.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::bus::{Bus, Event};
use crate::config::Config;
use crate::ids::{self, MessageIds};
use crate::metrics::Metrics;
use crate::protocol::client::Limits;
use crate::session::Sessions;
use crate::store::{NodeRecord, Store, StoreError, TokenRecord};

/// How often a node refreshes its registry entry.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// A registry entry older than this is a node that died without cleaning up.
pub const STALE_AFTER_MS: u64 = 15_000;

/// Who this node is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Name shown to clients (`chat-1`).
    pub name: String,
    pub ordinal: u32,
    /// The port it serves on (its registry key and queue name).
    pub port: u16,
    /// Address clients should use for it.
    pub address: String,
    /// Id of this run (pod UID or random).
    pub instance: String,
}

/// One frame for the sessions of one user, minus one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub user: String,
    pub frame: Utf8Bytes,
    pub except: Option<Arc<str>>,
    /// Counts as a delivered message (not a receipt).
    pub is_message: bool,
}

/// State shared by everything in one node.
pub struct Node {
    pub cfg: Config,
    pub id: Identity,
    pub admin_token: String,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub sessions: Arc<Sessions>,
    pub metrics: Metrics,
    pub ids: MessageIds,
    pub limits: Limits,
    drain: watch::Sender<bool>,
}

impl Node {
    pub fn new(
        cfg: Config,
        id: Identity,
        admin_token: String,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
    ) -> Self {
        let limits = Limits {
            max_body_bytes: cfg.max_body_bytes as usize,
        };
        Node {
            cfg,
            id,
            admin_token,
            store,
            bus,
            sessions: Arc::default(),
            metrics: Metrics::new(),
            ids: MessageIds::default(),
            limits,
            drain: watch::Sender::new(false),
        }
    }

    /// Starts draining: sessions are told to reconnect elsewhere, `/readyz`
    /// answers 503, no new connection is accepted.
    pub fn start_drain(&self) {
        self.drain.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Watches the drain flag.
    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Ready to take sessions: not draining, and the backends answer.
    pub async fn ready(&self) -> bool {
        !self.is_draining() && self.bus.ready() && self.store.ping().await.is_ok()
    }

    /// The token's record, when it is valid now.
    pub async fn check_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.store
            .get_token(&ids::token_hash(token), ids::now_ms())
            .await
    }

    /// This node's registry entry as of now.
    pub fn record(&self, ready: bool) -> NodeRecord {
        NodeRecord {
            port: self.id.port,
            name: self.id.name.clone(),
            address: self.id.address.clone(),
            ready,
            online: self.sessions.online() as u64,
            heartbeat_ms: ids::now_ms(),
            instance: self.id.instance.clone(),
        }
    }

    /// Hands frames to the local sessions, then to other nodes over the bus.
    /// Best effort: the inbox is the truth, `sync` repairs any loss.
    pub async fn fan_out(&self, deliveries: Vec<Delivery>) {
        for d in &deliveries {
            let n = self
                .sessions
                .deliver(&d.user, &d.frame, d.except.as_deref());
            if d.is_message {
                self.metrics.messages_delivered.inc_by(n as u64);
            }
        }
        for d in deliveries {
            let event = Event::Deliver {
                user: d.user,
                frame: d.frame.as_str().to_owned(),
                except: d.except.map(|s| s.to_string()),
            };
            if let Err(e) = self.bus.publish(event).await {
                self.metrics.bus_errors.inc();
                tracing::warn!(error = %e, "cannot publish delivery");
            }
        }
    }

    /// Stops the sessions of a revoked token, here and on other nodes.
    pub async fn kick(&self, user: &str, token_hash: &str) {
        self.sessions.kick_token(user, token_hash);
        let event = Event::Kick {
            user: user.to_owned(),
            token_hash: token_hash.to_owned(),
        };
        if let Err(e) = self.bus.publish(event).await {
            self.metrics.bus_errors.inc();
            tracing::warn!(error = %e, "cannot publish kick");
        }
    }
}

/// Resolves once the watched flag is true (or its sender is gone). Holds no
/// borrow of the flag across an await, so callers stay `Send`.
pub async fn until_set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}
