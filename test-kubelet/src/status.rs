//! Pod status documents, as JSON merge patches of `pods/status`. Every
//! patch carries the whole status the kubelet owns (a merge patch replaces
//! lists such as `conditions` whole).

use serde_json::{Value, json};

/// What the kubelet knows of its pod's one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed<'a> {
    pub container: &'a str,
    pub image: &'a str,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// RFC 3339; when the kubelet took the pod on.
    pub start_time: &'a str,
    pub restarts: i32,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not started: the reason and message say why (e.g. a missing Secret).
    Waiting {
        reason: &'static str,
        message: String,
    },
    Running {
        started_at: String,
        ready: bool,
    },
    /// Exited and will not be restarted.
    Terminated {
        exit_code: i32,
        reason: &'static str,
        finished_at: String,
    },
}

pub fn patch(o: &Observed<'_>, now: &str) -> Value {
    let (phase, ready, state) = match &o.state {
        State::Waiting { reason, message } => (
            "Pending",
            false,
            json!({ "waiting": { "reason": reason, "message": message } }),
        ),
        State::Running { started_at, ready } => (
            "Running",
            *ready,
            json!({ "running": { "startedAt": started_at } }),
        ),
        State::Terminated {
            exit_code,
            reason,
            finished_at,
        } => (
            if *exit_code == 0 {
                "Succeeded"
            } else {
                "Failed"
            },
            false,
            json!({ "terminated": { "exitCode": exit_code, "reason": reason, "finishedAt": finished_at } }),
        ),
    };
    let started = matches!(o.state, State::Running { .. });
    json!({ "status": {
        "phase": phase,
        "hostIP": o.host_ip,
        "hostIPs": [{ "ip": o.host_ip }],
        "podIP": o.pod_ip,
        "podIPs": [{ "ip": o.pod_ip }],
        "startTime": o.start_time,
        "conditions": conditions(ready, now),
        "containerStatuses": [{
            "name": o.container,
            "image": o.image,
            "imageID": "",
            "ready": ready,
            "started": started,
            "restartCount": o.restarts,
            "state": state,
        }],
    }})
}

fn conditions(ready: bool, now: &str) -> Value {
    let r = if ready { "True" } else { "False" };
    let c = |t: &str, s: &str| json!({ "type": t, "status": s, "lastTransitionTime": now });
    json!([
        c("PodScheduled", "True"),
        c("Initialized", "True"),
        c("ContainersReady", r),
        c("Ready", r)
    ])
}

/// A pod the test kubelet cannot run: Failed at once, with why.
pub fn failed(reason: &str, message: &str, host_ip: &str, now: &str) -> Value {
    json!({ "status": {
        "phase": "Failed",
        "reason": reason,
        "message": message,
        "hostIP": host_ip,
        "startTime": now,
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
            { "type": "Ready", "status": "False", "reason": reason, "lastTransitionTime": now },
        ],
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(state: State) -> Observed<'static> {
        Observed {
            container: "chat-node",
            image: "parley/chat-node:test",
            pod_ip: "127.1.0.1",
            host_ip: "127.0.0.1",
            start_time: "2026-01-01T00:00:00Z",
            restarts: 0,
            state,
        }
    }

    #[test]
    fn running_and_ready() {
        let p = patch(
            &observed(State::Running {
                started_at: "2026-01-01T00:00:01Z".to_owned(),
                ready: true,
            }),
            "t",
        );
        let s = &p["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "127.1.0.1");
        assert_eq!(
            s["conditions"][3],
            json!({ "type": "Ready", "status": "True", "lastTransitionTime": "t" })
        );
        assert_eq!(s["containerStatuses"][0]["ready"], true);
    }

    #[test]
    fn an_exit_is_a_terminal_phase() {
        let t = |code| State::Terminated {
            exit_code: code,
            reason: "Error",
            finished_at: "t".to_owned(),
        };
        assert_eq!(patch(&observed(t(0)), "t")["status"]["phase"], "Succeeded");
        assert_eq!(patch(&observed(t(1)), "t")["status"]["phase"], "Failed");
        assert_eq!(
            patch(&observed(t(1)), "t")["status"]["conditions"][3]["status"],
            "False"
        );
    }

    #[test]
    fn waiting_is_pending_with_the_reason() {
        let p = patch(
            &observed(State::Waiting {
                reason: "CreateContainerConfigError",
                message: "m".to_owned(),
            }),
            "t",
        );
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CreateContainerConfigError"
        );
    }
}
