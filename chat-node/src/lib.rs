//! # parley chat-node
//!
//! One process serves WebSocket (`/ws`) and HTTP on one port, speaking the
//! client protocol of PROTOCOL.md.
//!
//! # Layout
//!
//! Data flows one way: bytes -> frame -> connection -> command -> store, and
//! back out through sessions and the bus.
//!
//! - [`config`]: every setting, from flags and `CHAT_*` variables.
//! - [`server`]: binds the ports, builds store and bus, serves, drains.
//! - [`serve`]: the HTTP accept loop (header deadline, graceful stop).
//! - [`http`]: probes, metrics, tokens, route, nodes, and the `/ws` upgrade.
//! - [`connection`]: one WebSocket from `connect` to close: auth, rate and
//!   idle limits, request/reply, deliveries, drain.
//! - [`protocol`]: the wire format: client frames parsed and validated,
//!   server frames, the message object, error and close codes. Pure.
//! - [`command`]: one file per request type (`send`, `sync`, ...): rules,
//!   store calls, reply and deliveries.
//! - [`session`]: the sessions this node holds, by user; local delivery.
//! - [`store`]: the store seam, in memory or in Redis.
//! - [`bus`]: the bus seam to other nodes.
//! - [`node`]: what all of the above share for one node.
//! - [`metrics`], [`ids`], [`ratelimit`], [`error`]: support with one job
//!   each.

pub mod bus;
pub mod command;
pub mod config;
pub mod connection;
pub mod error;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod ratelimit;
pub mod serve;
pub mod server;
pub mod session;
pub mod store;

pub use config::Config;
pub use error::Error;
pub use server::Server;
