//! The in-process bus of a single node: the node has already delivered to
//! its own sessions, and there is nobody else.

use async_trait::async_trait;

use super::{Bus, BusError, Envelope};

/// The bus of a one-node chat.
#[derive(Debug, Default)]
pub struct LocalBus;

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, port: u16, _envelope: Envelope) -> Result<(), BusError> {
        Err(BusError::Unavailable(format!(
            "the in-process bus reaches no other node (port {port}); set CHAT_AMQP_URL for a cluster"
        )))
    }
    fn ready(&self) -> bool {
        true
    }
    fn is_local(&self) -> bool {
        true
    }
    async fn shutdown(&self) {}
}
