//! The bus seam: carries events to the other nodes that hold sessions of the
//! users concerned. A node always delivers to its own sessions first and
//! directly; the bus is only for the rest of the cluster, and only for the
//! nodes that presence names, never every node.
//!
//! - [`local::LocalBus`]: a single node; there is nobody else.
//! - [`rabbit::RabbitBus`]: RabbitMQ via lapin; exchange `chat.C`, one
//!   queue `chat.C.P` per node bound with routing key `P`.
//! - [`coalesce`]: how its publisher packs envelopes into broker messages,
//!   bounded in events and bytes.

pub mod coalesce;
pub mod local;
pub mod rabbit;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A bus failure. Delivery is best effort (the inbox is the truth), so
/// callers count and log it and move on.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// One frame for the sessions of one user, minus one session: what a
/// command hands the hub, and what travels to other nodes as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub user: String,
    /// The frame (JSON text), shared by every session it is queued for.
    #[serde(with = "text")]
    pub frame: Utf8Bytes,
    /// The session that caused it (it got a direct reply instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Arc<str>>,
    /// A `msg` frame (counted as a delivered message), not a receipt.
    #[serde(default)]
    pub message: bool,
}

/// Something for the sessions of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// Send the frame to every session of the user but `except`.
    Deliver(Delivery),
    /// Stop every session of `user` that connected with this token.
    Kick { user: String, token_hash: String },
}

impl Event {
    /// Bytes the event holds (its frame and names), for byte budgets.
    pub fn payload_len(&self) -> usize {
        match self {
            Event::Deliver(d) => {
                d.user.len() + d.frame.len() + d.except.as_ref().map_or(0, |e| e.len())
            }
            Event::Kick { user, token_hash } => user.len() + token_hash.len(),
        }
    }

    /// The user whose sessions the event is for.
    pub fn user(&self) -> &str {
        match self {
            Event::Deliver(Delivery { user, .. }) | Event::Kick { user, .. } => user,
        }
    }
}

/// A frame on the wire is a JSON string.
mod text {
    use serde::{Deserialize, Deserializer, Serializer};
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    pub fn serialize<S: Serializer>(frame: &Utf8Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(frame.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Utf8Bytes, D::Error> {
        String::deserialize(d).map(Utf8Bytes::from)
    }
}

/// Events for one node, addressed to one run of it: a node that restarted
/// on the same port drops what was meant for its previous run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Instance id of the node run the events are for.
    pub instance: String,
    pub events: Vec<Event>,
}

impl Envelope {
    /// Reads a broker message as a node does with what it consumes.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// What a bus hands incoming events to (the node's delivery hub).
pub trait Inbound: Send + Sync + 'static {
    fn receive(&self, event: Event);
}

/// What a bus counts (shared with the node's metrics).
#[derive(Debug, Clone, Default)]
pub struct BusMetrics {
    /// Events that could not be published (dropped: `sync` repairs).
    pub errors: prometheus_client::metrics::counter::Counter,
    /// Events the broker confirmed.
    pub events: prometheus_client::metrics::counter::Counter,
    /// Broker messages those events travelled in (coalesced per node).
    pub messages: prometheus_client::metrics::counter::Counter,
}

/// The bus seam.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `envelope` to the node on `port`. May return once it is queued
    /// for sending: envelopes to one node arrive in the order published,
    /// and failures after queueing are counted in [`BusMetrics::errors`].
    async fn publish(&self, port: u16, envelope: Envelope) -> Result<(), BusError>;
    /// Whether the bus can carry events now (for `/readyz`).
    fn ready(&self) -> bool;
    /// A bus with no other nodes behind it (nothing to publish, ever).
    fn is_local(&self) -> bool;
    /// Stops consuming and disconnects (on drain).
    async fn shutdown(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope {
            instance: "i-1".into(),
            events: vec![
                Event::Deliver(Delivery {
                    user: "bob".into(),
                    frame: r#"{"type":"msg"}"#.into(),
                    except: Some("s-1".into()),
                    message: true,
                }),
                Event::Kick {
                    user: "bob".into(),
                    token_hash: "ab".into(),
                },
            ],
        };
        let back: Envelope = Envelope::decode(&serde_json::to_vec(&e).unwrap()).unwrap();
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
