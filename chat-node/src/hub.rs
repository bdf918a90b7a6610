//! The delivery hub: the one path every frame for other sessions takes.
//! It delivers to this node's sessions first and directly, then hands the
//! rest to the bus for the other nodes that presence names (never every
//! node). It is made before the bus and handed to it as its inbound
//! handler, so a delivery from another node ends in the same local
//! delivery as one made here.
//!
//! Delivery is best effort: the inbox is the truth, and `sync` repairs any
//! loss, so failures here are counted and logged, never retried.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::bus::{Bus, Delivery, Envelope, Event, Inbound};
use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::store::{Nodes, Routes, Store};

/// Local delivery and fan-out of one node.
pub struct Hub {
    sessions: Arc<Sessions>,
    metrics: Metrics,
    store: Arc<dyn Store>,
    /// This node's port: never published to.
    port: u16,
    /// Set once, right after the bus is made with this hub as its inbound
    /// handler; until then (and without one) nothing leaves the node.
    bus: OnceLock<Arc<dyn Bus>>,
}

impl Hub {
    pub fn new(
        sessions: Arc<Sessions>,
        metrics: Metrics,
        store: Arc<dyn Store>,
        port: u16,
    ) -> Self {
        Hub {
            sessions,
            metrics,
            store,
            port,
            bus: OnceLock::new(),
        }
    }

    /// Connects the hub to the bus that carries its deliveries to other nodes.
    pub fn attach(&self, bus: Arc<dyn Bus>) {
        if self.bus.set(bus).is_err() {
            tracing::error!("a second bus attached to the delivery hub was ignored");
        }
    }

    /// The bus, if one is attached.
    pub fn bus(&self) -> Option<&Arc<dyn Bus>> {
        self.bus.get()
    }

    /// Whether there are other nodes to publish to.
    pub fn is_clustered(&self) -> bool {
        self.bus().is_some_and(|b| !b.is_local())
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Queues a frame for this node's sessions of its user (but `except`),
    /// counting it as delivered messages when it is a `msg` frame.
    fn deliver_local(&self, d: &Delivery) {
        let n = self
            .sessions
            .deliver(&d.user, &d.frame, d.except.as_deref());
        if d.message {
            self.metrics.messages_delivered.inc_by(n as u64);
        }
    }

    /// Hands frames to the local sessions, then over the bus to the other
    /// nodes that presence says hold sessions of the users concerned (from
    /// `routes` when the command read it already, else one lookup for all
    /// users), one envelope per node.
    pub async fn fan_out(&self, deliveries: Vec<Delivery>, routes: Option<Routes>) {
        for d in &deliveries {
            self.deliver_local(d);
        }
        if self.is_clustered() {
            // Counted and logged; the inbox repairs what did not arrive.
            let _ = self
                .publish(deliveries.into_iter().map(Event::Deliver).collect(), routes)
                .await;
        }
    }

    /// Stops the sessions of a revoked token, here and on other nodes. An
    /// error says the other nodes may not have been told (their sessions
    /// end at their next token check).
    pub async fn kick(&self, user: &str, token_hash: &str) -> Result<(), String> {
        self.sessions.kick_token(user, token_hash);
        if !self.is_clustered() {
            return Ok(());
        }
        let event = Event::Kick {
            user: user.to_owned(),
            token_hash: token_hash.to_owned(),
        };
        self.publish(vec![event], None).await
    }

    /// Sends events to every other node holding sessions of their users;
    /// the first failure, if any (each one is counted and logged).
    async fn publish(&self, events: Vec<Event>, routes: Option<Routes>) -> Result<(), String> {
        let Some(bus) = self.bus() else {
            return Ok(());
        };
        let mut users: Vec<&str> = events.iter().map(Event::user).collect();
        users.sort_unstable();
        users.dedup();
        // Users are deduplicated: each one's nodes are taken once. Both
        // sides are sorted, so a group of n members costs n log n, not n².
        let known = routes.and_then(|mut r| {
            r.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            users
                .iter()
                .map(|u| {
                    let i = r.binary_search_by(|(user, _)| user.as_str().cmp(u)).ok()?;
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
                return Err(e.to_string());
            }
        };
        let mut result = Ok(());
        for (port, envelope) in route(&users, &presence, &events, self.port) {
            let n = envelope.events.len() as u64;
            if let Err(e) = bus.publish(port, envelope).await {
                self.metrics.bus_errors.inc_by(n);
                tracing::warn!(error = %e, port, "cannot publish to node");
                if result.is_ok() {
                    result = Err(format!("node {port}: {e}"));
                }
            }
        }
        result
    }
}

impl Inbound for Hub {
    /// An event from another node: the same local delivery as our own.
    fn receive(&self, event: Event) {
        match event {
            Event::Deliver(d) => self.deliver_local(&d),
            Event::Kick { user, token_hash } => {
                self.sessions.kick_token(&user, &token_hash);
            }
        }
    }
}

/// Groups events by the nodes that hold sessions of their users: one
/// envelope per node (addressed to its current run), none for `self_port`.
/// `users` is sorted and deduplicated, `presence[i]` the nodes of
/// `users[i]`.
fn route(
    users: &[&str],
    presence: &[Nodes],
    events: &[Event],
    self_port: u16,
) -> Vec<(u16, Envelope)> {
    let mut out: BTreeMap<u16, Envelope> = BTreeMap::new();
    for event in events {
        let Ok(i) = users.binary_search(&event.user()) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(user: &str) -> Event {
        Event::Deliver(Delivery {
            user: user.into(),
            frame: format!("to {user}").into(),
            except: None,
            message: true,
        })
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
    fn route_finds_every_user_of_a_large_group() {
        let names: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
        let users: Vec<&str> = names.iter().map(String::as_str).collect();
        let presence: Vec<Nodes> = (0..300)
            .map(|i| vec![(8760 + (i % 3) as u16, format!("i{}", i % 3))])
            .collect();
        let events: Vec<Event> = users.iter().rev().map(|u| deliver(u)).collect();
        let routed = route(&users, &presence, &events, 8760);
        assert_eq!(routed.len(), 2, "none to this node");
        for (port, envelope) in &routed {
            assert_eq!(envelope.events.len(), 100);
            for e in &envelope.events {
                let i: u16 = e.user()[1..].parse().unwrap();
                assert_eq!(8760 + i % 3, *port, "{}", e.user());
            }
        }
    }

    #[test]
    fn route_skips_this_node_and_absent_users() {
        let users = ["alice"];
        let presence = vec![vec![(8750, "i0".to_owned())]];
        assert!(route(&users, &presence, &[deliver("alice")], 8750).is_empty());
        assert!(route(&users, &[vec![]], &[deliver("alice")], 8750).is_empty());
    }

    #[tokio::test]
    async fn inbound_events_reach_local_sessions_like_local_deliveries() {
        use crate::session::SessionHandle;
        let sessions = Arc::new(Sessions::default());
        let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::new(
            crate::store::Retention {
                max_entries: 10,
                max_age_ms: 1000,
            },
        ));
        let metrics = Metrics::new();
        let hub = Hub::new(sessions.clone(), metrics.clone(), store, 8750);
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let _reg = sessions
            .add(
                "bob".into(),
                SessionHandle {
                    id: "s1".into(),
                    token_hash: "t".into(),
                    tx,
                    stop: Arc::default(),
                    queued: Arc::default(),
                },
            )
            .unwrap();
        hub.receive(deliver("bob"));
        assert_eq!(rx.recv().await.as_deref(), Some("to bob"));
        hub.fan_out(
            vec![Delivery {
                user: "bob".into(),
                frame: "again".into(),
                except: None,
                message: true,
            }],
            None,
        )
        .await;
        assert_eq!(rx.recv().await.as_deref(), Some("again"));
        assert_eq!(metrics.messages_delivered.get(), 2);
    }
}
