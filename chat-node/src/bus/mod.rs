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

use async_trait::async_trait;

/// A bus failure. Delivery is best effort (the inbox is the truth), so
/// callers count and log it and move on.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

pub use parley_protocol::bus::{Delivery, Envelope, Event};

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
