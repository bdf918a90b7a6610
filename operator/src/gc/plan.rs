//! Garbage-collection decisions, as a pure function of what exists: the
//! cluster's desired size, the pods that exist, and what the node runs left
//! in Redis and RabbitMQ. No I/O here; [`super::execute`] carries a plan out.
//!
//! The rules (DESIGN.md, "Garbage collection replaces ZooKeeper watches"):
//! - a port whose ordinal is at or above `replicas` (or that is no ordinal of
//!   the cluster at all) and whose pod no longer exists is retired: its queue
//!   is deleted, then every run's registry entry, details and presence;
//! - a port whose ordinal is below `replicas` but whose pod is gone will come
//!   back: every run's presence and online count are cleared, the queue kept;
//! - a port whose pod exists keeps the pod's own run untouched; runs of that
//!   port other than the pod's (a previous run that died) are reset;
//! - a run whose heartbeat is fresh counts as alive, like a pod's;
//! - the feed consumers `<port>:<instance>` (of the archive feed and of the
//!   offline push feed) of every run that is not alive are deleted,
//!   whatever their port (a run's consumer is never reused: a run
//!   that comes back is a new instance with a new consumer); consumers with
//!   any other name are not a node run's and are left alone.
//!
//! Every Redis action names the run (instance id) judged gone, and is
//! carried out by compare-and-delete on it; a feed consumer only while it
//! holds no pending entries.

use std::collections::{BTreeMap, BTreeSet};

use parley_cluster::PortFormula;
use parley_cluster::archive::{consumer_name, parse_consumer};

/// One port as the backends show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortState {
    /// Runs (instance ids) with details or presence on this port.
    pub runs: BTreeSet<String>,
    /// A queue `chat.C.P` was declared for it (and not yet deleted).
    pub queue: bool,
}

/// What the collection sees.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub replicas: u32,
    pub formula: Option<PortFormula>,
    /// Existing pods: ordinal -> pod UID (the run's instance id).
    pub pods: BTreeMap<u32, String>,
    /// Runs whose heartbeat is fresh: alive whatever the pod list says (the
    /// pods are listed before Redis is read, so a run that registered in
    /// between has no pod in the list).
    pub fresh_runs: BTreeSet<String>,
    /// Ports the registry or the queue list knows of.
    pub ports: BTreeMap<u16, PortState>,
    /// Names of the consumers of the archive and push feeds' groups.
    pub feed_consumers: BTreeSet<String>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Delete queue `chat.C.P` if unused; the port's retirement waits for it.
    DeleteQueue { port: u16 },
    /// Remove run `instance`'s registry entry, details and presence.
    RetireRun { port: u16, instance: String },
    /// Clear run `instance`'s presence and online count; keep its entry.
    ResetRun { port: u16, instance: String },
    /// Drop the port from the queue list (after its queue is gone).
    ForgetPort { port: u16 },
    /// Delete run `instance`'s consumers of the archive and push feeds
    /// where they hold no pending entries (else live nodes claim them
    /// first; a later pass retries).
    DeleteConsumer { port: u16, instance: String },
}

impl Action {
    pub fn port(&self) -> u16 {
        match self {
            Action::DeleteQueue { port }
            | Action::RetireRun { port, .. }
            | Action::ResetRun { port, .. }
            | Action::ForgetPort { port }
            | Action::DeleteConsumer { port, .. } => *port,
        }
    }

    /// A short description for status and events.
    pub fn describe(&self, cluster: &str) -> String {
        match self {
            Action::DeleteQueue { port } => format!("queue chat.{cluster}.{port}"),
            Action::RetireRun { port, instance } => {
                format!("registry entry and presence of node {port} (run {instance})")
            }
            Action::ResetRun { port, instance } => {
                format!("presence of node {port} (run {instance})")
            }
            Action::ForgetPort { port } => format!("queue record of node {port}"),
            Action::DeleteConsumer { port, instance } => {
                format!("feed consumers {}", consumer_name(*port, instance))
            }
        }
    }
}

/// What to collect, grouped by port in ascending order; within a port the
/// queue goes first (a queue in use stops the port's retirement). Archive
/// consumers come last, after every port.
pub fn plan(o: &Observed) -> Vec<Action> {
    // A run whose instance is the UID of any existing pod is live, whatever
    // port it is on (during a rollout that changed the ports, say).
    let live: BTreeSet<&str> = o
        .pods
        .values()
        .chain(&o.fresh_runs)
        .map(String::as_str)
        .collect();
    let mut out = Vec::new();
    for (&port, state) in &o.ports {
        let ordinal = o.formula.and_then(|f| f.ordinal(port));
        let owned = ordinal.is_some_and(|n| o.pods.contains_key(&n))
            || state.runs.iter().any(|r| live.contains(r.as_str()));
        let gone = state.runs.iter().filter(|r| !live.contains(r.as_str()));
        if owned || ordinal.is_some_and(|n| n < o.replicas) {
            // A live pod owns the port, or the ordinal will come back: clear
            // only what gone runs left (no session can be there), keep the queue.
            out.extend(gone.map(|r| Action::ResetRun {
                port,
                instance: r.clone(),
            }));
        } else {
            // Gone for good.
            if state.queue {
                out.push(Action::DeleteQueue { port });
            }
            out.extend(gone.map(|r| Action::RetireRun {
                port,
                instance: r.clone(),
            }));
            out.push(Action::ForgetPort { port });
        }
    }
    out.extend(
        o.feed_consumers
            .iter()
            .filter_map(|name| parse_consumer(name))
            .filter(|(_, instance)| !live.contains(instance))
            .map(|(port, instance)| Action::DeleteConsumer {
                port,
                instance: instance.to_owned(),
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: PortFormula = PortFormula {
        base: 8750,
        step: 10,
    };

    fn state(runs: &[&str], queue: bool) -> PortState {
        PortState {
            runs: runs.iter().map(|r| r.to_string()).collect(),
            queue,
        }
    }

    fn observed(replicas: u32, pods: &[(u32, &str)], ports: &[(u16, PortState)]) -> Observed {
        Observed {
            replicas,
            formula: Some(F),
            pods: pods.iter().map(|(o, u)| (*o, u.to_string())).collect(),
            fresh_runs: BTreeSet::new(),
            ports: ports.iter().cloned().collect(),
            feed_consumers: BTreeSet::new(),
        }
    }

    fn consumers(o: &mut Observed, names: &[&str]) {
        o.feed_consumers = names.iter().map(|n| n.to_string()).collect();
    }

    fn consumer_actions(p: &[Action]) -> Vec<&Action> {
        p.iter()
            .filter(|a| matches!(a, Action::DeleteConsumer { .. }))
            .collect()
    }

    #[test]
    fn live_nodes_are_left_alone() {
        let o = observed(
            2,
            &[(0, "u0"), (1, "u1")],
            &[(8750, state(&["u0"], true)), (8760, state(&["u1"], true))],
        );
        assert!(plan(&o).is_empty());
    }

    #[test]
    fn a_scaled_away_node_is_retired_queue_first() {
        // Scaled from 3 to 2; pod 2 is gone.
        let o = observed(2, &[(0, "u0"), (1, "u1")], &[(8770, state(&["u2"], true))]);
        assert_eq!(
            plan(&o),
            vec![
                Action::DeleteQueue { port: 8770 },
                Action::RetireRun {
                    port: 8770,
                    instance: "u2".into()
                },
                Action::ForgetPort { port: 8770 },
            ]
        );
    }

    #[test]
    fn a_drained_node_that_deregistered_still_loses_its_queue() {
        let o = observed(1, &[(0, "u0")], &[(8760, state(&[], true))]);
        assert_eq!(
            plan(&o),
            vec![
                Action::DeleteQueue { port: 8760 },
                Action::ForgetPort { port: 8760 }
            ]
        );
    }

    #[test]
    fn a_pod_still_terminating_above_replicas_is_not_collected_yet() {
        let o = observed(
            2,
            &[(0, "u0"), (1, "u1"), (2, "u2")],
            &[(8770, state(&["u2"], true))],
        );
        assert!(plan(&o).is_empty());
    }

    #[test]
    fn a_gone_pod_that_comes_back_is_reset_and_keeps_its_queue() {
        let o = observed(3, &[(0, "u0"), (2, "u2")], &[(8760, state(&["u1"], true))]);
        assert_eq!(
            plan(&o),
            vec![Action::ResetRun {
                port: 8760,
                instance: "u1".into()
            }]
        );
    }

    #[test]
    fn a_pod_that_came_back_is_never_touched_but_its_predecessor_is() {
        // Ordinal 1 restarted: new uid "u1b"; the old run "u1a" left presence.
        let o = observed(
            2,
            &[(0, "u0"), (1, "u1b")],
            &[(8760, state(&["u1a", "u1b"], true))],
        );
        assert_eq!(
            plan(&o),
            vec![Action::ResetRun {
                port: 8760,
                instance: "u1a".into()
            }]
        );
    }

    #[test]
    fn the_operator_was_down_while_several_nodes_went_away() {
        // Scaled 5 -> 1 and pods 1..4 gone, all unnoticed: everything at once.
        let ports: Vec<(u16, PortState)> = (1..5)
            .map(|o| (F.port(o).unwrap(), state(&[&format!("u{o}")], true)))
            .collect();
        let o = observed(1, &[(0, "u0")], &ports);
        let p = plan(&o);
        assert_eq!(
            p.iter()
                .filter(|a| matches!(a, Action::DeleteQueue { .. }))
                .count(),
            4
        );
        assert_eq!(
            p.iter()
                .filter(|a| matches!(a, Action::RetireRun { .. }))
                .count(),
            4
        );
        assert!(p.iter().all(|a| a.port() != 8750));
    }

    #[test]
    fn a_live_run_on_a_port_off_the_formula_is_never_touched() {
        // Ports moved to base 9000; pod 0 still runs on 8750 until rolled.
        let mut o = observed(1, &[(0, "u0")], &[(8750, state(&["u0"], true))]);
        o.formula = Some(PortFormula {
            base: 9000,
            step: 10,
        });
        assert!(plan(&o).is_empty());
    }

    #[test]
    fn a_run_with_a_fresh_heartbeat_is_alive_without_a_pod() {
        // Registered after the pods were listed: its pod is not in the list.
        let mut o = observed(1, &[(0, "u0")], &[(8760, state(&["new"], true))]);
        o.fresh_runs.insert("new".into());
        assert!(plan(&o).is_empty());
    }

    #[test]
    fn ports_off_the_formula_are_retired_when_unowned() {
        // The base port changed; the old ports belong to no ordinal now.
        let o = observed(1, &[(0, "u0")], &[(9000, state(&["old"], true))]);
        assert_eq!(plan(&o)[0], Action::DeleteQueue { port: 9000 });
    }

    #[test]
    fn feed_consumers_of_live_runs_are_kept_and_of_gone_runs_deleted() {
        // Pod 1 was replaced (u1a -> u1b) and pod 2 scaled away; the
        // consumers of the gone runs go, whatever their port.
        let mut o = observed(2, &[(0, "u0"), (1, "u1b")], &[]);
        consumers(&mut o, &["8750:u0", "8760:u1a", "8760:u1b", "8770:u2"]);
        assert_eq!(
            plan(&o),
            vec![
                Action::DeleteConsumer {
                    port: 8760,
                    instance: "u1a".into()
                },
                Action::DeleteConsumer {
                    port: 8770,
                    instance: "u2".into()
                },
            ]
        );
    }

    #[test]
    fn the_archive_consumer_of_a_run_with_a_fresh_heartbeat_is_kept() {
        let mut o = observed(1, &[(0, "u0")], &[]);
        consumers(&mut o, &["8760:new"]);
        o.fresh_runs.insert("new".into());
        assert!(plan(&o).is_empty());
    }

    #[test]
    fn a_live_runs_archive_consumer_on_any_port_is_kept() {
        // The ports moved; pod 0 still archives under its old port's name.
        let mut o = observed(1, &[(0, "u0")], &[]);
        o.formula = Some(PortFormula {
            base: 9000,
            step: 10,
        });
        consumers(&mut o, &["8750:u0"]);
        assert!(plan(&o).is_empty());
    }

    #[test]
    fn feed_consumers_not_named_after_a_run_are_never_touched() {
        let mut o = observed(1, &[(0, "u0")], &[]);
        consumers(&mut o, &["backfill", "node:x", "0:x", "8750:", "replay-1"]);
        assert!(plan(&o).is_empty());
    }

    #[test]
    fn feed_consumers_come_after_every_port() {
        // Scaled 2 -> 1: the gone node's queue and registry, then its consumer.
        let mut o = observed(1, &[(0, "u0")], &[(8760, state(&["u1"], true))]);
        consumers(&mut o, &["8750:u0", "8760:u1"]);
        let p = plan(&o);
        assert_eq!(
            p.last(),
            Some(&Action::DeleteConsumer {
                port: 8760,
                instance: "u1".into()
            })
        );
        assert_eq!(consumer_actions(&p).len(), 1);
        assert_eq!(p.last().unwrap().describe("prod"), "feed consumers 8760:u1");
    }
}
