//! The bus seam: carries an event to the other nodes that hold sessions of
//! the users concerned. The node always delivers to its own sessions first
//! and directly; the bus is only for the rest of the cluster.
//!
//! [`local::LocalBus`] is the single-node bus: there are no other nodes.

pub mod local;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A bus failure; delivery is best effort (the inbox is the truth), so the
/// caller logs and counts it and moves on.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

/// Something for the sessions of one user on other nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// Send `frame` (JSON text) to every session of `user` but `except`.
    Deliver {
        user: String,
        frame: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
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

/// The bus seam.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `event` to the other nodes that hold sessions of its user.
    async fn publish(&self, event: Event) -> Result<(), BusError>;
    /// Whether the bus can carry events now (for `/readyz`).
    fn ready(&self) -> bool;
}
