//! Status and conditions, computed from what the reconcile observed by a
//! pure function, so every rule has a unit test.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::meta::{pod_name, port_formula, selector_string};
use crate::crd::{ChatCluster, ChatClusterStatus, NodeStatus};

/// A pod of the cluster, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub ordinal: u32,
    pub uid: String,
    pub ready: bool,
}

/// A node's registry entry (from Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub port: u16,
    pub address: String,
    pub ready: bool,
    pub online: u64,
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observations {
    pub pods: Vec<PodInfo>,
    pub registry: Vec<RegistryEntry>,
    /// The StatefulSet has seen the newest template and rolled it to every pod.
    pub rolled_out: bool,
    /// `Err(why)` when a backend does not answer.
    pub redis: Result<(), String>,
    pub rabbitmq: Result<(), String>,
    /// What waits to be collected.
    pub pending_cleanup: Vec<String>,
    /// A spec problem the operator cannot work around.
    pub config_error: Option<String>,
    /// Objects in the way that this ChatCluster does not own.
    pub not_owned: Option<String>,
    pub paused: bool,
    /// `None`: monitoring disabled; `Some(Err(why))`: the PodMonitor
    /// cannot be made.
    pub monitoring: Option<Result<(), super::apply::MonitoringBlocked>>,
}

impl Default for Observations {
    fn default() -> Self {
        Observations {
            pods: vec![],
            registry: vec![],
            rolled_out: true,
            redis: Ok(()),
            rabbitmq: Ok(()),
            pending_cleanup: vec![],
            config_error: None,
            not_owned: None,
            paused: false,
            monitoring: None,
        }
    }
}

/// The status for `cc` given what was observed; conditions keep their
/// transition time while their status does not change.
pub fn compute(cc: &ChatCluster, o: &Observations, now: &Time) -> ChatClusterStatus {
    let previous = cc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = cc.metadata.generation;
    let desired = cc.spec.replicas.max(0) as u32;
    // One entry per wanted ordinal, and per pod beyond them that the
    // registry knows (a node still draining after a scale-down): bounded by
    // replicas and the registry, never by a pod's name.
    let formula = port_formula(cc);
    let mut ordinals: BTreeSet<u32> = (0..desired).collect();
    ordinals.extend(o.pods.iter().map(|p| p.ordinal).filter(|&n| {
        formula
            .port(n)
            .is_some_and(|port| o.registry.iter().any(|r| r.port == port))
    }));
    let nodes: Vec<NodeStatus> = ordinals
        .into_iter()
        .filter_map(|ordinal| {
            let port = formula.port(ordinal)?;
            let pod = o.pods.iter().find(|p| p.ordinal == ordinal);
            let reg = o.registry.iter().find(|r| r.port == port);
            Some(NodeStatus {
                name: pod_name(cc, ordinal),
                ordinal,
                port,
                address: reg.map(|r| r.address.clone()).unwrap_or_default(),
                ready: pod.is_some_and(|p| p.ready) && reg.is_some_and(|r| r.ready),
                online: reg.filter(|_| pod.is_some()).map_or(0, |r| r.online),
            })
        })
        .collect();
    let ready_replicas = o.pods.iter().filter(|p| p.ready).count() as i32;
    let replicas = o.pods.len() as i32;

    let mut conditions = Vec::new();
    let mut set = |ty: &str, status: bool, reason: &str, message: String| {
        conditions.push(condition(
            previous, ty, status, reason, message, generation, now,
        ));
    };
    let all_ready = ready_replicas >= cc.spec.replicas && replicas == cc.spec.replicas;
    set(
        "Ready",
        all_ready && o.config_error.is_none() && o.not_owned.is_none(),
        if all_ready {
            "AllNodesReady"
        } else {
            "NodesNotReady"
        },
        format!("{ready_replicas} of {} nodes ready", cc.spec.replicas),
    );
    let progressing = !o.rolled_out || replicas != cc.spec.replicas;
    set(
        "Progressing",
        progressing,
        if progressing { "RollingOut" } else { "Stable" },
        if progressing {
            format!("{replicas} pods, {} desired; rolling out", cc.spec.replicas)
        } else {
            "every node runs the current spec".to_owned()
        },
    );
    set(
        "RedisAvailable",
        o.redis.is_ok(),
        if o.redis.is_ok() {
            "Reachable"
        } else {
            "Unreachable"
        },
        o.redis
            .clone()
            .err()
            .unwrap_or_else(|| "Redis answers".into()),
    );
    set(
        "RabbitMQAvailable",
        o.rabbitmq.is_ok(),
        if o.rabbitmq.is_ok() {
            "Reachable"
        } else {
            "Unreachable"
        },
        o.rabbitmq
            .clone()
            .err()
            .unwrap_or_else(|| "RabbitMQ answers".into()),
    );
    let degraded = if let Some(e) = &o.config_error {
        Some(("InvalidSpec", e.clone()))
    } else if let Some(e) = &o.not_owned {
        Some(("NotOwned", e.clone()))
    } else if o.redis.is_err() || o.rabbitmq.is_err() {
        let waiting = if o.pending_cleanup.is_empty() {
            String::new()
        } else {
            format!("; waiting to collect: {}", o.pending_cleanup.join(", "))
        };
        Some((
            "BackendUnavailable",
            format!("a backend is unreachable, nothing is collected{waiting}"),
        ))
    } else {
        None
    };
    set(
        "Degraded",
        degraded.is_some(),
        degraded.as_ref().map_or("Healthy", |d| d.0),
        degraded.map_or_else(|| "all backends answer".to_owned(), |d| d.1),
    );
    // A drain tells at most grace x rate sessions; a node holding more
    // closes the rest at the end of the grace without a paced reconnect.
    let rate = cc
        .spec
        .chat
        .drain_rate
        .unwrap_or(parley_cluster::env::DEFAULT_DRAIN_RATE);
    let paced = u64::from(cc.spec.drain_grace_seconds) * u64::from(rate);
    let busiest = nodes.iter().max_by_key(|n| n.online);
    let covered = busiest.is_none_or(|n| n.online <= paced);
    set(
        "DrainCovered",
        covered,
        if covered {
            "GraceCoversSessions"
        } else {
            "GraceTooShort"
        },
        match busiest.filter(|_| !covered) {
            Some(n) => format!(
                "{} holds {} sessions, but a drain of {} s at {rate}/s tells only {paced}; raise drainGraceSeconds or chat.drainRate",
                n.name, n.online, cc.spec.drain_grace_seconds
            ),
            None => format!(
                "a drain tells up to {paced} sessions per node ({} s at {rate}/s)",
                cc.spec.drain_grace_seconds
            ),
        },
    );
    match &o.monitoring {
        None => {}
        Some(Ok(())) => set(
            "MonitoringReady",
            true,
            "PodMonitorApplied",
            format!(
                "PodMonitor {} scrapes every node",
                super::podmonitor::name(cc)
            ),
        ),
        Some(Err(blocked)) => set(
            "MonitoringReady",
            false,
            blocked.reason,
            blocked.message.clone(),
        ),
    }
    set(
        "Paused",
        o.paused,
        if o.paused {
            "AnnotationSet"
        } else {
            "Reconciling"
        },
        if o.paused {
            format!(
                "{} is \"true\": nothing is changed or collected",
                crate::crd::PAUSE_ANNOTATION
            )
        } else {
            "reconciling".to_owned()
        },
    );

    ChatClusterStatus {
        replicas,
        ready_replicas,
        selector: selector_string(cc),
        observed_generation: generation,
        conditions,
        online: nodes.iter().map(|n| n.online).sum(),
        nodes,
        cluster_id: cc.cluster_id(),
        pending_cleanup: o.pending_cleanup.clone(),
    }
}

fn condition(
    previous: &[Condition],
    ty: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_owned();
    let since = previous
        .iter()
        .find(|c| c.type_ == ty && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: ty.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChatClusterSpec;

    fn cc(replicas: i32) -> ChatCluster {
        let mut cc = ChatCluster::new(
            "chat",
            ChatClusterSpec {
                replicas,
                ..ChatClusterSpec::default()
            },
        );
        cc.metadata.namespace = Some("ns".into());
        cc.metadata.generation = Some(3);
        cc
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn cond<'a>(s: &'a ChatClusterStatus, ty: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == ty).unwrap()
    }

    fn pod(ordinal: u32, ready: bool) -> PodInfo {
        PodInfo {
            ordinal,
            uid: format!("u{ordinal}"),
            ready,
        }
    }

    fn reg(port: u16, online: u64) -> RegistryEntry {
        RegistryEntry {
            port,
            address: format!("chat-x:{port}"),
            ready: true,
            online,
        }
    }

    #[test]
    fn a_healthy_cluster_reports_nodes_and_online_counts() {
        let o = Observations {
            pods: vec![pod(0, true), pod(1, true)],
            registry: vec![reg(8750, 3), reg(8760, 4)],
            ..Observations::default()
        };
        let s = compute(&cc(2), &o, &now());
        assert_eq!((s.replicas, s.ready_replicas, s.online), (2, 2, 7));
        assert_eq!(
            s.selector,
            "app.kubernetes.io/instance=chat,app.kubernetes.io/name=chat-node"
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.cluster_id, "ns_chat");
        assert_eq!(
            s.nodes[1],
            NodeStatus {
                name: "chat-1".into(),
                ordinal: 1,
                port: 8760,
                address: "chat-x:8760".into(),
                ready: true,
                online: 4
            }
        );
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Progressing").status, "False");
        assert_eq!(cond(&s, "Degraded").status, "False");
        assert_eq!(cond(&s, "DrainCovered").status, "True");
    }

    #[test]
    fn monitoring_has_a_condition_only_when_enabled() {
        let o = Observations::default();
        let s = compute(&cc(1), &o, &now());
        assert!(s.conditions.iter().all(|c| c.type_ != "MonitoringReady"));
        let o = Observations {
            monitoring: Some(Err(super::super::apply::MonitoringBlocked {
                reason: "CRDMissing",
                message: "PodMonitor is not served".into(),
            })),
            ..Observations::default()
        };
        let m = cond(&compute(&cc(1), &o, &now()), "MonitoringReady").clone();
        assert_eq!(
            (m.status.as_str(), m.reason.as_str(), m.message.as_str()),
            ("False", "CRDMissing", "PodMonitor is not served")
        );
        let o = Observations {
            monitoring: Some(Ok(())),
            ..Observations::default()
        };
        let m = cond(&compute(&cc(1), &o, &now()), "MonitoringReady").clone();
        assert_eq!(
            (m.status.as_str(), m.reason.as_str()),
            ("True", "PodMonitorApplied")
        );
    }

    #[test]
    fn a_node_holding_more_than_a_drain_can_pace_is_reported() {
        let mut c = cc(2);
        c.spec.drain_grace_seconds = 10;
        c.spec.chat.drain_rate = Some(100);
        let o = Observations {
            pods: vec![pod(0, true), pod(1, true)],
            registry: vec![reg(8750, 1000), reg(8760, 1001)],
            ..Observations::default()
        };
        let s = compute(&c, &o, &now());
        let d = cond(&s, "DrainCovered");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("False", "GraceTooShort")
        );
        assert!(
            d.message.contains("chat-1 holds 1001 sessions"),
            "{}",
            d.message
        );
        // At the default rate the same grace covers it.
        c.spec.chat.drain_rate = None;
        assert_eq!(
            cond(&compute(&c, &o, &now()), "DrainCovered").status,
            "True"
        );
    }

    #[test]
    fn scaling_up_is_progressing_and_not_ready() {
        let o = Observations {
            pods: vec![pod(0, true)],
            ..Observations::default()
        };
        let s = compute(&cc(3), &o, &now());
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").message, "1 of 3 nodes ready");
        assert_eq!(cond(&s, "Progressing").status, "True");
        assert_eq!(s.nodes.len(), 3);
        assert!(!s.nodes[2].ready);
    }

    #[test]
    fn an_unreachable_backend_degrades_and_names_what_waits() {
        let o = Observations {
            pods: vec![pod(0, true)],
            rabbitmq: Err("connection refused".into()),
            pending_cleanup: vec!["queue chat.x.8760".into()],
            ..Observations::default()
        };
        let s = compute(&cc(1), &o, &now());
        assert_eq!(cond(&s, "RabbitMQAvailable").status, "False");
        assert_eq!(cond(&s, "RabbitMQAvailable").message, "connection refused");
        assert_eq!(cond(&s, "RedisAvailable").status, "True");
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "BackendUnavailable")
        );
        assert!(d.message.contains("queue chat.x.8760"));
        assert_eq!(s.pending_cleanup, vec!["queue chat.x.8760".to_owned()]);
    }

    #[test]
    fn transition_times_survive_while_status_holds() {
        let mut c = cc(1);
        let earlier = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let o = Observations {
            pods: vec![pod(0, true)],
            ..Observations::default()
        };
        let mut first = compute(&c, &o, &earlier);
        c.status = Some(first.clone());
        let second = compute(&c, &o, &now());
        assert_eq!(cond(&second, "Ready").last_transition_time, earlier);
        // A change of status moves it.
        first.conditions.clear();
        let o2 = Observations {
            pods: vec![pod(0, false)],
            ..Observations::default()
        };
        let third = compute(&c, &o2, &now());
        assert_eq!(cond(&third, "Ready").last_transition_time, now());
    }

    #[test]
    fn node_entries_are_bounded_by_replicas_and_the_registry() {
        // A pod with an absurd ordinal, and one above replicas that the
        // registry knows (still draining after a scale-down).
        let o = Observations {
            pods: vec![pod(0, true), pod(2, true), pod(4_000_000_000, true)],
            registry: vec![reg(8750, 1), reg(8770, 2)],
            ..Observations::default()
        };
        let s = compute(&cc(1), &o, &now());
        let ordinals: Vec<u32> = s.nodes.iter().map(|n| n.ordinal).collect();
        assert_eq!(ordinals, vec![0, 2]);
        assert_eq!(s.online, 3);
    }

    #[test]
    fn paused_and_invalid_specs_are_reported() {
        let o = Observations {
            paused: true,
            config_error: Some("no Redis URL".into()),
            ..Observations::default()
        };
        let s = compute(&cc(0), &o, &now());
        assert_eq!(cond(&s, "Paused").status, "True");
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.reason.as_str(), d.message.as_str()),
            ("InvalidSpec", "no Redis URL")
        );
        assert_eq!(cond(&s, "Ready").status, "False");
    }
}
