//! # parley-cluster
//!
//! The contract every program of a parley cluster shares: the chat-node
//! writes these names and records, the operator reads and collects them.
//! Nothing server-side lives here (no WebSocket, no broker client), so the
//! operator can depend on it without compiling a chat server.
//!
//! # Layout
//!
//! - [`keys`]: every Redis key name under `chat:C:`.
//! - [`names`]: RabbitMQ names (`chat.C`, `chat.C.P`).
//! - [`ports`]: the port formula, base + ordinal x step, and its inverse.
//! - [`ids`]: the cluster-id rule and the StatefulSet hostname ordinal.
//! - [`env`]: names of the `CHAT_*` settings a node reads.
//! - [`registry`]: the node registry (`NodeRecord`) and presence clean-up,
//!   with the compare-and-delete scripts both sides run.
//! - [`archive`]: the archive feed's consumer group and consumer names.
//! - [`push`]: the offline push feed's consumer group.
//! - [`gc`]: what the operator reads and removes after node runs that are gone.
//! - [`testing`]: test support the crates' tests share (free ports).

pub mod archive;
pub mod env;
pub mod gc;
pub mod ids;
pub mod keys;
pub mod names;
pub mod ports;
pub mod push;
pub mod registry;
pub mod testing;

pub use keys::Keys;
pub use ports::PortFormula;
pub use registry::{NodeRecord, Registry, RegistryError};
