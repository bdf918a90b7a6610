//! One task per pod bound to this node: check it can be run, start its
//! process, probe it for readiness, restart it as its policy says, stop it
//! when the pod is deleted, and finalize the deletion.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Probe, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tokio::process::Child;
use tokio::sync::watch;

use crate::credentials::{self, Credentials};
use crate::status::{Observed, State};
use crate::{Settings, addr, env, probe, process, program_for, status};

/// What every worker shares.
pub struct Ctx {
    pub client: Client,
    pub settings: Settings,
    /// The Node's address, reported as each pod's hostIP.
    pub host_ip: String,
    pub addrs: Mutex<addr::Pool>,
}

/// The latest view of the pod; `None` once its object is gone.
pub type Updates = watch::Receiver<Option<Pod>>;

pub async fn run(ctx: Arc<Ctx>, mut updates: Updates) {
    let Some(pod) = updates.borrow_and_update().clone() else {
        return;
    };
    let ns = pod.namespace().unwrap_or_default();
    let mut w = Worker {
        pods: Api::namespaced(ctx.client.clone(), &ns),
        ctx,
        name: pod.name_any(),
        ns,
        uid: pod.uid().unwrap_or_default(),
        updates,
    };
    tracing::info!(pod = %w.name, namespace = %w.ns, "pod taken on");
    w.pod(&pod).await;
    w.finalize().await;
}

struct Worker {
    ctx: Arc<Ctx>,
    pods: Api<Pod>,
    name: String,
    ns: String,
    uid: String,
    updates: Updates,
}

/// How a running process stopped.
enum Outcome {
    /// The pod was deleted and its process stopped.
    Deleted,
    Exited(ExitStatus),
}

impl Worker {
    async fn pod(&mut self, pod: &Pod) {
        if deleting(pod) {
            return;
        }
        if matches!(phase(pod), Some("Succeeded" | "Failed")) {
            return self.until_deleted().await;
        }
        let runnable = match &self.ctx.settings.podman {
            Some(podman) => match runnable_container(pod) {
                Ok(c)
                    if podman
                        .has_image(c.image.as_deref().unwrap_or_default())
                        .await =>
                {
                    Ok((c, Launch::Container))
                }
                Ok(c) => Err(format!(
                    "image {:?} is not in podman's local storage (the test kubelet pulls nothing)",
                    c.image.as_deref().unwrap_or_default()
                )),
                Err(e) => Err(e),
            },
            None => runnable(&self.ctx.settings.programs, pod)
                .map(|(c, bin)| (c, Launch::Program(bin.to_owned()))),
        };
        let (container, launch) = match runnable {
            Ok((c, launch)) => (c.clone(), launch),
            Err(message) => {
                tracing::warn!(pod = %self.name, %message, "pod cannot be run here");
                let now = now();
                self.report(status::failed(
                    "UnsupportedImage",
                    &message,
                    &self.ctx.host_ip,
                    &now,
                ))
                .await;
                return self.until_deleted().await;
            }
        };
        let reported = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref()?.parse().ok());
        let Some(ip) = self
            .ctx
            .addrs
            .lock()
            .expect("address pool")
            .take_preferring(reported)
        else {
            let now = now();
            self.report(status::failed(
                "NoAddress",
                "loopback addresses exhausted",
                &self.ctx.host_ip,
                &now,
            ))
            .await;
            return self.until_deleted().await;
        };
        self.supervise(pod, &container, &launch, ip).await;
        self.ctx.addrs.lock().expect("address pool").give_back(ip);
        let _ = std::fs::remove_dir_all(self.credentials_dir());
    }

    fn credentials_dir(&self) -> std::path::PathBuf {
        self.ctx
            .settings
            .state_dir
            .join(format!("{}_{}_{}", self.ns, self.name, self.uid))
    }

    /// The pod's ServiceAccount credentials, written afresh (`None`: the
    /// pod mounts no token).
    async fn credentials(&self, pod: &Pod) -> Result<Option<Credentials>, String> {
        let Some(account) = credentials::service_account(pod) else {
            return Ok(None);
        };
        let s = &self.ctx.settings;
        let server = format!("https://{}:{}", s.apiserver_host, s.apiserver_port);
        credentials::project(
            &self.ctx.client,
            pod,
            &account,
            &self.credentials_dir(),
            &server,
        )
        .await
        .map(Some)
    }

    /// Starts the process and keeps it going until the pod is deleted, or
    /// it exits and its restart policy says to leave it.
    async fn supervise(&mut self, pod: &Pod, c: &Container, launch: &Launch, ip: Ipv4Addr) {
        let start_time = now();
        let ip_text = ip.to_string();
        let image = c.image.clone().unwrap_or_default();
        let host_ip = self.ctx.host_ip.clone();
        let observed = |restarts, state| Observed {
            container: &c.name,
            image: &image,
            pod_ip: &ip_text,
            host_ip: &host_ip,
            start_time: &start_time,
            restarts,
            state,
        };
        let log = self
            .ctx
            .settings
            .log_dir
            .join(format!("{}_{}_{}.log", self.ns, self.name, self.uid));
        // Counted on from what the pod reports, across a kubelet restart.
        let mut restarts = pod
            .status
            .as_ref()
            .and_then(|s| {
                s.container_statuses
                    .as_ref()?
                    .first()
                    .map(|c| c.restart_count)
            })
            .unwrap_or(0);
        loop {
            let (env, creds) = loop {
                let resolved = match self.credentials(pod).await {
                    Ok(creds) => self
                        .env(pod, c, ip, creds.as_ref())
                        .await
                        .map(|e| (e, creds)),
                    Err(e) => Err(e),
                };
                match resolved {
                    Ok(resolved) => break resolved,
                    Err(message) => {
                        let state = State::Waiting {
                            reason: "CreateContainerConfigError",
                            message,
                        };
                        self.report(status::patch(&observed(restarts, state), &now()))
                            .await;
                        if self.deleted_within(Duration::from_secs(2)).await {
                            return;
                        }
                    }
                }
            };
            let args = env::args(c, &env, ip);
            let container_name = crate::container::name(&self.ns, &self.name, &self.uid);
            let spawned = match (launch, &self.ctx.settings.podman) {
                (Launch::Container, Some(podman)) => podman.spawn(
                    &crate::container::Run {
                        name: &container_name,
                        pod,
                        container: c,
                        env: &env,
                        args: &args,
                        credentials: creds.as_ref().map(|c| c.dir.as_path()),
                    },
                    &log,
                ),
                (Launch::Program(bin), _) => process::spawn(bin, &args, &env, &log),
                (Launch::Container, None) => unreachable!("containers run only with podman"),
            };
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    let message = format!("cannot start {launch:?}: {e}");
                    let state = State::Terminated {
                        exit_code: 128,
                        reason: "StartError",
                        finished_at: now(),
                    };
                    self.report(status::patch(&observed(restarts, state), &now()))
                        .await;
                    tracing::warn!(pod = %self.name, %message);
                    return self.until_deleted().await;
                }
            };
            tracing::info!(pod = %self.name, %ip, pid = child.id(), log = %log.display(), "process started");
            let started_at = now();
            let probe = c.readiness_probe.as_ref();
            let report = |ready| {
                status::patch(
                    &observed(
                        restarts,
                        State::Running {
                            started_at: started_at.clone(),
                            ready,
                        },
                    ),
                    &now(),
                )
            };
            // No readiness probe: ready once started, as in a kubelet.
            self.report(report(probe.is_none())).await;
            let outcome = self
                .watch_process(&mut child, c, probe, ip, creds.as_ref(), pod, &report)
                .await;
            // A container outlives a killed `podman run`: remove it by name.
            if let Some(podman) = &self.ctx.settings.podman {
                podman.remove(&container_name).await;
            }
            let Outcome::Exited(exit) = outcome else {
                return;
            };
            let code = exit_code(exit);
            tracing::info!(pod = %self.name, code, "process exited");
            if restarts_after(pod, code) {
                restarts += 1;
                let backoff = Duration::from_secs(1 << restarts.min(5));
                if self.deleted_within(backoff).await {
                    return;
                }
                continue;
            }
            let reason = if code == 0 { "Completed" } else { "Error" };
            let state = State::Terminated {
                exit_code: code,
                reason,
                finished_at: now(),
            };
            self.report(status::patch(&observed(restarts, state), &now()))
                .await;
            return self.until_deleted().await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn watch_process(
        &mut self,
        child: &mut Child,
        c: &Container,
        probe: Option<&Probe>,
        ip: Ipv4Addr,
        creds: Option<&Credentials>,
        pod: &Pod,
        report: &impl Fn(bool) -> Value,
    ) -> Outcome {
        let renew_every = creds.map_or(Duration::MAX, |c| c.refresh_after);
        let mut renew = tokio::time::interval_at(
            tokio::time::Instant::now() + renew_every.min(Duration::from_secs(1 << 30)),
            renew_every.min(Duration::from_secs(1 << 30)),
        );
        let get = probe.and_then(|p| p.http_get.as_ref());
        let target = get.and_then(|g| {
            Some((
                probe::port(c, g)?,
                g.path.clone().unwrap_or_else(|| "/".to_owned()),
            ))
        });
        let seconds =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let period = seconds(probe.and_then(|p| p.period_seconds), 10).max(Duration::from_secs(1));
        let timeout = seconds(probe.and_then(|p| p.timeout_seconds), 1).max(Duration::from_secs(1));
        let successes = probe.and_then(|p| p.success_threshold).unwrap_or(1).max(1);
        let failures = probe.and_then(|p| p.failure_threshold).unwrap_or(3).max(1);
        let delay = seconds(probe.and_then(|p| p.initial_delay_seconds), 0);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + delay, period);
        let (mut ready, mut ok_run, mut fail_run) = (probe.is_none(), 0, 0);
        if probe.is_some() && target.is_none() {
            tracing::warn!(pod = %self.name, "readiness probe is not an httpGet on a known port: never ready");
        }
        loop {
            tokio::select! {
                gone = self.updates.changed() => {
                    if gone.is_err() || self.updates.borrow().as_ref().is_none_or(deleting) {
                        let grace = self.grace();
                        tracing::info!(pod = %self.name, ?grace, "pod deleted: stopping its process");
                        match process::terminate(child, grace).await {
                            Ok(how) => tracing::info!(pod = %self.name, ?how, "process stopped"),
                            Err(e) => tracing::warn!(pod = %self.name, error = %e, "stopping the process failed"),
                        }
                        return Outcome::Deleted;
                    }
                }
                exit = child.wait() => match exit {
                    Ok(exit) => return Outcome::Exited(exit),
                    Err(e) => {
                        tracing::warn!(pod = %self.name, error = %e, "waiting for the process failed");
                        return Outcome::Exited(ExitStatus::from_raw(128 << 8));
                    }
                },
                _ = renew.tick(), if creds.is_some() => {
                    // Rewritten in place: the process's client rereads it.
                    match self.credentials(pod).await {
                        Ok(_) => tracing::info!(pod = %self.name, "serviceaccount token renewed"),
                        Err(e) => tracing::warn!(pod = %self.name, error = %e, "renewing the serviceaccount token failed"),
                    }
                }
                _ = tick.tick(), if target.is_some() => {
                    let (port, path) = target.as_ref().expect("probe target");
                    let host = get.and_then(|g| g.host.as_deref()).and_then(|h| h.parse().ok()).unwrap_or(IpAddr::V4(ip));
                    if probe::http_get(host, *port, path, timeout).await {
                        (ok_run, fail_run) = (ok_run + 1, 0);
                    } else {
                        (ok_run, fail_run) = (0, fail_run + 1);
                    }
                    let now_ready = if ready { fail_run < failures } else { ok_run >= successes };
                    if now_ready != ready {
                        ready = now_ready;
                        tracing::info!(pod = %self.name, ready, "readiness changed");
                        self.report(report(ready)).await;
                    }
                }
            }
        }
    }

    /// The container's environment, reading the Secrets and ConfigMaps it names.
    async fn env(
        &self,
        pod: &Pod,
        c: &Container,
        ip: Ipv4Addr,
        creds: Option<&Credentials>,
    ) -> Result<Vec<(String, String)>, String> {
        let refs = env::references(c);
        let mut fetched = env::Fetched::default();
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        for name in refs.secrets {
            match secrets.get_opt(&name).await {
                Ok(Some(s)) => drop(fetched.secrets.insert(name, s)),
                Ok(None) => {}
                Err(e) => return Err(format!("reading secret {name:?}: {e}")),
            }
        }
        let maps: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        for name in refs.config_maps {
            match maps.get_opt(&name).await {
                Ok(Some(m)) => drop(fetched.config_maps.insert(name, m)),
                Ok(None) => {}
                Err(e) => return Err(format!("reading configmap {name:?}: {e}")),
            }
        }
        let s = &self.ctx.settings;
        env::resolve(&env::Inputs {
            pod,
            container: c,
            pod_ip: ip,
            host_ip: &self.ctx.host_ip,
            fetched: &fetched,
            apiserver_host: &s.apiserver_host,
            apiserver_port: s.apiserver_port,
            // A container reads them where in-cluster config looks; a
            // process is told where they are.
            kubeconfig: creds
                .filter(|_| s.podman.is_none())
                .map(|c| c.kubeconfig.as_path()),
        })
        .map_err(|e| e.to_string())
    }

    async fn report(&self, patch: Value) {
        if let Err(e) = self
            .pods
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!(pod = %self.name, error = %e, "status update failed");
        }
    }

    /// The grace period the deletion asked for, else the pod's own.
    fn grace(&self) -> Duration {
        let pod = self.updates.borrow();
        let meta = pod
            .as_ref()
            .and_then(|p| p.metadata.deletion_grace_period_seconds);
        let spec = pod
            .as_ref()
            .and_then(|p| p.spec.as_ref()?.termination_grace_period_seconds);
        Duration::from_secs(meta.or(spec).unwrap_or(30).max(0) as u64)
    }

    async fn until_deleted(&mut self) {
        while !self
            .updates
            .borrow_and_update()
            .as_ref()
            .is_none_or(deleting)
        {
            if self.updates.changed().await.is_err() {
                return;
            }
        }
    }

    async fn deleted_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.until_deleted())
            .await
            .is_ok()
    }

    /// Removes the pod object once its process is gone (a grace-0 delete is
    /// what a kubelet sends when it has stopped the pod's containers).
    async fn finalize(&mut self) {
        if self.updates.borrow().is_none() {
            return;
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods.delete(&self.name, &dp).await {
            Ok(_) => tracing::info!(pod = %self.name, "pod finalized"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "finalizing the pod failed"),
        }
    }
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn now() -> String {
    Timestamp::now().to_string()
}

/// How a pod's container runs.
#[derive(Debug)]
enum Launch {
    /// As a process of this program.
    Program(std::path::PathBuf),
    /// As a podman container of its image.
    Container,
}

/// The pod's one container, if the test kubelet can run it at all.
fn runnable_container(pod: &Pod) -> Result<&Container, String> {
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err("the test kubelet does not run init containers".to_owned());
    }
    let [c] = spec.containers.as_slice() else {
        return Err(format!(
            "the test kubelet runs pods of exactly one container, not {}",
            spec.containers.len()
        ));
    };
    if c.command.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(format!(
            "the test kubelet runs the image's own program; container {:?} sets a command",
            c.name
        ));
    }
    Ok(c)
}

/// The one container the test kubelet can run and its program, or why not.
pub fn runnable<'a, 'p>(
    programs: &'p [crate::Program],
    pod: &'a Pod,
) -> Result<(&'a Container, &'p std::path::Path), String> {
    let c = runnable_container(pod)?;
    let image = c.image.as_deref().unwrap_or_default();
    let Some(program) = program_for(programs, image) else {
        let known: Vec<&str> = programs.iter().map(|p| p.image_prefix.as_str()).collect();
        return Err(format!(
            "the test kubelet runs only images starting with one of {known:?}; container {:?} has image {image:?}",
            c.name
        ));
    };
    Ok((c, &program.bin))
}

fn exit_code(s: ExitStatus) -> i32 {
    s.code()
        .or_else(|| s.signal().map(|n| 128 + n))
        .unwrap_or(128)
}

fn restarts_after(pod: &Pod, code: i32) -> bool {
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => false,
        Some("OnFailure") => code != 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(images: &[&str]) -> Pod {
        let containers = images
            .iter()
            .map(|i| Container {
                name: "c".to_owned(),
                image: Some((*i).to_owned()),
                ..Container::default()
            })
            .collect();
        Pod {
            spec: Some(PodSpec {
                containers,
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn only_a_single_container_of_a_known_image_is_runnable() {
        let programs = vec!["parley/chat-node=/bin/chat-node".parse().unwrap()];
        let (_, bin) = runnable(&programs, &pod(&["parley/chat-node:test"])).unwrap();
        assert_eq!(bin, std::path::Path::new("/bin/chat-node"));
        let err = runnable(&programs, &pod(&["nginx:1"])).unwrap_err();
        assert!(err.contains("\"nginx:1\""), "{err}");
        assert!(
            runnable(
                &programs,
                &pod(&["parley/chat-node:a", "parley/chat-node:b"])
            )
            .is_err()
        );
        let mut with_command = pod(&["parley/chat-node:a"]);
        with_command.spec.as_mut().unwrap().containers[0].command = Some(vec!["sh".to_owned()]);
        assert!(runnable(&programs, &with_command).is_err());
    }
}
