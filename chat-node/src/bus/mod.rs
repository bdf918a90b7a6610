//! The bus seam: carries events to the other nodes that hold sessions of the
//! users concerned. A node always delivers to its own sessions first and
//! directly; the bus is only for the rest of the cluster, and only for the
//! nodes that presence names, never every node.
//!
//! - [`local::LocalBus`]: a single node; there is nobody else.
//! - [`rabbit::RabbitBus`]: RabbitMQ via lapin; exchange `chat.C`, one
//!   queue `chat.C.P` per node bound with routing key `P`.

pub mod local;
pub mod rabbit;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A bus failure. Delivery is best effort (the inbox is the truth), so
/// callers count and log it and move on.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Something for the sessions of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// Send `frame` (JSON text) to every session of `user` but `except`.
    Deliver {
        user: String,
        frame: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
        /// A `msg` frame (counted as a delivered message), not a receipt.
        #[serde(default)]
        message: bool,
    },
    /// Stop every session of `user` that connected with this token.
    Kick { user: String, token_hash: String },
}

impl Event {
    /// The user whose sessions the event is for.
    pub fn user(&self) -> &str {
        match self {
            Event::Deliver { user, .. } | Event::Kick { user, .. } => user,
        }
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

/// What a bus hands incoming events to.
pub type Inbound = Arc<dyn Fn(Event) + Send + Sync>;

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
