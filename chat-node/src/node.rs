//! What every connection and HTTP handler of one node shares: configuration,
//! identity, the store, the bus, the sessions, metrics, and the drain signal.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::bus::{Bus, Envelope, Event};
use crate::config::Config;
use crate::ids::{self, MessageIds};
use crate::metrics::Metrics;
use crate::protocol::client::Limits;
use crate::session::Sessions;
use crate::store::{NodeRecord, Nodes, Routes, Store, StoreError, TokenRecord};

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
    presence_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Node {
    pub fn new(
        cfg: Config,
        id: Identity,
        admin_token: String,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        sessions: Arc<Sessions>,
        metrics: Metrics,
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
            sessions,
            metrics,
            ids: MessageIds::default(),
            limits,
            drain: watch::Sender::new(false),
            presence_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
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

    /// Hands frames to the local sessions, then over the bus to the other
    /// nodes that presence says hold sessions of the users concerned (from
    /// `routes` when the command read it already, else one lookup for all
    /// users), one envelope per node. Best effort: the inbox is the truth,
    /// `sync` repairs any loss.
    pub async fn fan_out(&self, deliveries: Vec<Delivery>, routes: Option<Routes>) {
        for d in &deliveries {
            deliver_local(
                &self.sessions,
                &self.metrics,
                &d.user,
                &d.frame,
                d.except.as_deref(),
                d.is_message,
            );
        }
        if self.bus.is_local() {
            return;
        }
        let events = deliveries
            .into_iter()
            .map(|d| Event::Deliver {
                user: d.user,
                frame: d.frame.as_str().to_owned(),
                except: d.except.map(|s| s.to_string()),
                message: d.is_message,
            })
            .collect();
        self.publish(events, routes).await;
    }

    /// Stops the sessions of a revoked token, here and on other nodes.
    pub async fn kick(&self, user: &str, token_hash: &str) {
        self.sessions.kick_token(user, token_hash);
        if self.bus.is_local() {
            return;
        }
        let event = Event::Kick {
            user: user.to_owned(),
            token_hash: token_hash.to_owned(),
        };
        self.publish(vec![event], None).await;
    }

    /// Sends events to every other node holding sessions of their users.
    async fn publish(&self, events: Vec<Event>, routes: Option<Routes>) {
        let mut users: Vec<&str> = events.iter().map(Event::user).collect();
        users.sort_unstable();
        users.dedup();
        // Users are deduplicated: each one's nodes are taken once.
        let known = routes.and_then(|mut r| {
            users
                .iter()
                .map(|u| {
                    let i = r.iter().position(|(user, _)| user == u)?;
                    Some(std::mem::take(&mut r[i].1))
                })
                .collect::<Option<Vec<Nodes>>>()
        });
        let presence = match known {
            Some(p) => Ok(p),
            None => self.store.presence(&users).await,
        };
        let presence = match presence {
            Ok(p) => p,
            Err(e) => {
                self.metrics.bus_errors.inc_by(events.len() as u64);
                tracing::warn!(error = %e, "cannot read presence; deliveries to other nodes skipped");
                return;
            }
        };
        for (port, envelope) in route(&users, &presence, &events, self.id.port) {
            let n = envelope.events.len() as u64;
            if let Err(e) = self.bus.publish(port, envelope).await {
                self.metrics.bus_errors.inc_by(n);
                tracing::warn!(error = %e, port, "cannot publish to node");
            }
        }
    }

    /// The lock that serializes presence writes for `user` on this node, so
    /// a session opening and the last one closing cannot reorder them.
    fn presence_lock(&self, user: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        &self.presence_locks[(h.finish() as usize) % self.presence_locks.len()]
    }

    /// A session of `user` (already registered here) opened: record
    /// presence; returns the user's newest inbox position.
    pub async fn join(&self, user: &str) -> Result<u64, StoreError> {
        let _g = self.presence_lock(user).lock().await;
        self.store.join(user, self.id.port, &self.id.instance).await
    }

    /// A session of `user` closed (already deregistered): if it was the
    /// user's last one here, drop the presence entry.
    pub async fn leave(&self, user: &str) {
        let _g = self.presence_lock(user).lock().await;
        if self.sessions.has_user(user) {
            return;
        }
        if let Err(e) = self
            .store
            .leave(user, self.id.port, &self.id.instance)
            .await
        {
            tracing::warn!(error = %e, user, "cannot drop presence; it is cleared when this node restarts");
        }
    }
}

/// Queues a frame for this node's sessions of `user` (but `except`),
/// counting it as delivered messages when it is a `msg` frame.
pub fn deliver_local(
    sessions: &Sessions,
    metrics: &Metrics,
    user: &str,
    frame: &Utf8Bytes,
    except: Option<&str>,
    is_message: bool,
) {
    let n = sessions.deliver(user, frame, except);
    if is_message {
        metrics.messages_delivered.inc_by(n as u64);
    }
}

/// Groups events by the nodes that hold sessions of their users: one
/// envelope per node (addressed to its current run), none for `self_port`.
pub fn route(
    users: &[&str],
    presence: &[Nodes],
    events: &[Event],
    self_port: u16,
) -> Vec<(u16, Envelope)> {
    let mut out: std::collections::BTreeMap<u16, Envelope> = std::collections::BTreeMap::new();
    for event in events {
        let Some(i) = users.iter().position(|u| *u == event.user()) else {
            continue;
        };
        for (port, instance) in presence.get(i).into_iter().flatten() {
            if *port == self_port {
                continue;
            }
            out.entry(*port)
                .or_insert_with(|| Envelope {
                    instance: instance.clone(),
                    events: Vec::new(),
                })
                .events
                .push(event.clone());
        }
    }
    out.into_iter().collect()
}

/// Resolves once the watched flag is true (or its sender is gone). Holds no
/// borrow of the flag across an await, so callers stay `Send`.
pub async fn until_set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(user: &str) -> Event {
        Event::Deliver {
            user: user.into(),
            frame: format!("to {user}"),
            except: None,
            message: true,
        }
    }

    #[test]
    fn route_sends_one_envelope_per_other_node_holding_the_users() {
        let users = ["alice", "bob"];
        let presence = vec![
            vec![(8750, "i0".to_owned()), (8760, "i1".to_owned())], // alice: here and on 8760
            vec![(8760, "i1".to_owned()), (8770, "i2".to_owned())], // bob
        ];
        let events = vec![deliver("bob"), deliver("alice")];
        let routed = route(&users, &presence, &events, 8750);
        assert_eq!(routed.len(), 2);
        assert_eq!(routed[0].0, 8760);
        assert_eq!(routed[0].1.instance, "i1");
        assert_eq!(routed[0].1.events, vec![deliver("bob"), deliver("alice")]);
        assert_eq!(routed[1].0, 8770);
        assert_eq!(routed[1].1.events, vec![deliver("bob")]);
    }

    #[test]
    fn route_skips_this_node_and_absent_users() {
        let users = ["alice"];
        let presence = vec![vec![(8750, "i0".to_owned())]];
        assert!(route(&users, &presence, &[deliver("alice")], 8750).is_empty());
        assert!(route(&users, &[vec![]], &[deliver("alice")], 8750).is_empty());
    }
}
