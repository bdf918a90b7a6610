//! # parley operator
//!
//! Reconciles `ChatCluster` resources into chat-node StatefulSets with
//! stable ordinals and ports, keeps their status, and collects what gone
//! nodes leave in RabbitMQ and Redis (instead of ZooKeeper watches).
//!
//! # Layout
//!
//! - [`crd`]: the ChatCluster types; the CRD is derived from them.
//! - [`context`]: the `Context` through which every dependency reaches a
//!   reconcile, and the per-cluster state kept between reconciles.
//! - [`controller`]: the watch loop, `reconcile` (under kube's finalizer
//!   helper) and `error_policy`.
//! - [`reconcile`]: one reconcile, split by job: `validate` (spec checks),
//!   `apply` (owned objects, each built by a pure function: `headless`,
//!   `statefulset`, `services`, `pdb`), `observe` (pods the StatefulSet
//!   controls, rollout), `backends`, `collect` (GC), `cleanup` (deletion:
//!   stop the nodes, then wipe), `status` (pure).
//! - [`gc`]: garbage collection: `plan` decides (pure), `execute` talks to
//!   Redis and RabbitMQ.
//! - [`shutdown`]: SIGTERM and Ctrl-C, caught from the start.
//! - [`metrics`], [`http`], [`error`]: support with one job each.

pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod gc;
pub mod http;
pub mod metrics;
pub mod reconcile;
pub mod shutdown;

pub use error::Error;

/// A reconcile result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
