//! # parley system tests
//!
//! Tests that cross programs, kept out of the crates they test so that no
//! crate's dependency tree carries another program (the operator's tests
//! must not compile a WebSocket client or the chat server):
//!
//! - `tests/gc.rs`: chat-node processes register in the real Redis and
//!   declare queues in the real RabbitMQ, hold real WebSocket sessions, and
//!   are killed; the operator's collection then removes exactly what the
//!   gone runs left.
//! - `tests/e2e.rs`: the operator against a real Kubernetes cluster
//!   (ignored unless a kubeconfig and the `PARLEY_E2E_*` variables are set).
//!
//! The library itself is empty: a package needs a target besides its tests.
