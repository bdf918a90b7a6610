//! What nodes exchange over the bus: an [`Envelope`] of [`Event`]s for one
//! run of one node, JSON in a broker message. Nodes of two versions meet
//! here during a rolling upgrade, so fields are only ever added, with
//! defaults. The bus itself (RabbitMQ, coalescing) is chat-node's.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tungstenite::Utf8Bytes;

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
    use tungstenite::Utf8Bytes;

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
