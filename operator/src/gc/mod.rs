//! Garbage collection of what chat-node runs leave in Redis and RabbitMQ:
//! [`plan`] decides (pure), [`execute`] observes the backends and carries a
//! plan out, deleting only what the plan names, queues only when unused.

pub mod execute;
pub mod plan;

pub use execute::{BackendError, Backends, Collected};
pub use plan::{Action, Observed, PortState, plan};
