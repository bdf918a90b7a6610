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
//! - [`protocol`]: the wire format: client frames parsed and validated,
//!   server frames, the message object, error and close codes. Pure.
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
pub mod protocol;
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
pub use server::Server;

/// For the fuzz target `bus_envelope` (fuzz/), not an API: decodes a broker
/// message as a node does with what it consumes, and panics if one that
/// decodes does not encode back to the same envelope.
#[doc(hidden)]
pub fn fuzz_bus_envelope(bytes: &[u8]) {
    if let Ok(envelope) = bus::Envelope::decode(bytes) {
        let again = serde_json::to_vec(&envelope).map(|b| bus::Envelope::decode(&b));
        assert!(
            matches!(&again, Ok(Ok(e)) if *e == envelope),
            "round trip changed {envelope:?} into {again:?}"
        );
    }
}
