//! # parley operator
//!
//! Reconciles `ChatCluster` resources into chat-node StatefulSets with
//! stable ordinals and ports, keeps their status, and collects what gone
//! nodes leave in RabbitMQ and Redis (instead of ZooKeeper watches).
//!
//! # Layout
//!
//! - [`crd`]: the ChatCluster types; the CRD is derived from them.
//! - [`controller`]: the watch loop, `reconcile` and `error_policy`, and the
//!   `Context` through which every dependency reaches a reconcile.
//! - [`reconcile`]: one reconcile: a pure builder per owned object
//!   (`headless`, `statefulset`, `services`, `pdb`), `status` (pure), and
//!   the I/O around them, including deletion cleanup.
//! - [`gc`]: garbage collection: `plan` decides (pure), `execute` talks to
//!   Redis and RabbitMQ.
//! - [`metrics`], [`http`], [`error`]: support with one job each.

pub mod controller;
pub mod crd;
pub mod error;
pub mod gc;
pub mod http;
pub mod metrics;
pub mod reconcile;

pub use error::Error;

/// A reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
