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
//! - [`web`]: the browser client at `/`, files built into the binary.
//! - [`connection`]: one WebSocket from `connect` to close: auth, rate and
//!   idle limits, request/reply, deliveries, drain.
//! - [`protocol`]: the wire format (the `parley-protocol` crate): client
//!   frames parsed and validated, server frames, the message object, error
//!   and close codes, the bus envelope. Pure.
//! - [`command`]: one file per request type (`send`, `sync`, ...): rules,
//!   store calls, reply and deliveries.
//! - [`session`]: the sessions this node holds, by user; local delivery.
//! - [`store`]: the store seam, in memory or in Redis.
//! - [`bus`]: the bus seam to other nodes.
//! - [`hub`]: the one delivery path: local sessions first, then the bus to
//!   the other nodes presence names; the bus's inbound handler.
//! - [`node`]: what all of the above share for one node: identity,
//!   settings, store, hub, drain.
//! - [`settings`]: the typed settings handlers run with, built and checked
//!   once from [`config`].
//! - [`shutdown`]: the stop signals every loop selects on.
//! - [`drain`]: leaving a node at a bounded rate, naming where to go.
//! - [`jwt`]: JWT connect tokens verified against the application's keys.
//! - [`push`]: the offline push webhook: a bounded queue, signed POSTs,
//!   retries, off the send path.
//! - [`metrics`], [`ids`], [`ratelimit`], [`cache`], [`error`]: support
//!   with one job each.

pub mod archive;
mod bus;
mod cache;
mod command;
pub mod config;
mod connection;
mod drain;
pub mod error;
mod http;
mod hub;
pub mod ids;
pub mod jwt;
mod metrics;
mod node;
pub mod push;
mod ratelimit;
mod serve;
pub mod server;
mod session;
mod settings;
pub mod shutdown;
pub mod store;
mod unanswered;
mod web;

pub use config::Config;
pub use error::Error;
pub use metrics::resident_memory_bytes;
/// The wire format (the `parley-protocol` crate, shared with chat-bench and
/// the fuzz targets).
pub use parley_protocol as protocol;
pub use server::Server;
