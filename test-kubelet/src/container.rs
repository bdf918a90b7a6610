//! Pods as real containers, with podman: the pod's image from podman's
//! local storage (nothing is pulled), its env and args, the user and
//! read-only root its security context asks for, host networking (each
//! pod still listens on its own loopback address, so fixed ports do not
//! collide), and the ServiceAccount credentials mounted where a container
//! reads them, `/var/run/secrets/kubernetes.io/serviceaccount`.
//!
//! The kubelet holds the attached `podman run` client as the pod's
//! process: its output is the container's, SIGTERM to it reaches the
//! container (podman proxies signals), and its exit status is the
//! container's. A container left behind by a kill is removed by name.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::process::{Child, Command};

/// Where a container reads its ServiceAccount token, CA and namespace.
pub const SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Clone)]
pub struct Podman {
    pub podman: PathBuf,
    /// Given as `--runtime` (scripts/oci-runtime.sh here: runc without
    /// rlimits, which this sandbox refuses).
    pub oci_runtime: Option<PathBuf>,
}

impl Podman {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.podman);
        if let Some(r) = &self.oci_runtime {
            cmd.arg("--runtime").arg(r);
        }
        cmd
    }

    /// Whether `image` is in local storage.
    pub async fn has_image(&self, image: &str) -> bool {
        self.command()
            .args(["image", "exists", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    /// Starts the pod's container, attached, its output appended to `log`.
    pub fn spawn(&self, run: &Run<'_>, log: &Path) -> std::io::Result<Child> {
        let out = crate::process::open_log(log)?;
        let err = out.try_clone()?;
        let mut cmd = self.command();
        cmd.args(run_args(run))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        cmd.spawn()
    }

    /// Removes the container at once, whatever state it is in.
    pub async fn remove(&self, name: &str) {
        let _ = self
            .command()
            .args(["rm", "--force", "--ignore", "--time", "0", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// One container run of a pod.
pub struct Run<'a> {
    pub name: &'a str,
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub env: &'a [(String, String)],
    pub args: &'a [String],
    /// The pod's ServiceAccount directory, mounted read-only.
    pub credentials: Option<&'a Path>,
}

/// The container's name: unique per pod run, valid for podman.
pub fn name(ns: &str, pod: &str, uid: &str) -> String {
    format!("k8s_{pod}_{ns}_{}", uid.get(..8).unwrap_or(uid))
}

/// `podman run …` for a pod (pure, so it is tested without podman).
pub fn run_args(r: &Run<'_>) -> Vec<String> {
    let mut a: Vec<String> = ["run", "--rm", "--name", r.name, "--network", "host"]
        .map(str::to_owned)
        .into();
    // The user and group: the container's security context over the pod's.
    let c = r.container.security_context.as_ref();
    let p = r
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let user = c
        .and_then(|c| c.run_as_user)
        .or(p.and_then(|p| p.run_as_user));
    let group = c
        .and_then(|c| c.run_as_group)
        .or(p.and_then(|p| p.run_as_group));
    match (user, group) {
        (Some(u), Some(g)) => a.extend(["--user".to_owned(), format!("{u}:{g}")]),
        (Some(u), None) => a.extend(["--user".to_owned(), u.to_string()]),
        _ => {}
    }
    if c.and_then(|c| c.read_only_root_filesystem) == Some(true) {
        a.push("--read-only".to_owned());
    }
    if let Some(dir) = r.credentials {
        a.extend([
            "--volume".to_owned(),
            format!("{}:{SERVICEACCOUNT_DIR}:ro", dir.display()),
        ]);
    }
    for (k, v) in r.env {
        a.extend(["--env".to_owned(), format!("{k}={v}")]);
    }
    a.push(r.container.image.clone().unwrap_or_default());
    a.extend(r.args.iter().cloned());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext};

    #[test]
    fn the_run_has_the_pods_image_user_root_env_args_and_credentials() {
        let pod = Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(65532),
                    run_as_group: Some(65532),
                    ..PodSecurityContext::default()
                }),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let container = Container {
            name: "chat-node".to_owned(),
            image: Some("parley/chat-node:0.1.0".to_owned()),
            security_context: Some(SecurityContext {
                read_only_root_filesystem: Some(true),
                ..SecurityContext::default()
            }),
            ..Container::default()
        };
        let env = vec![("CHAT_BIND".to_owned(), "127.1.0.2".to_owned())];
        let args = vec!["--x".to_owned()];
        let a = run_args(&Run {
            name: "k8s_chat-0_ns_12345678",
            pod: &pod,
            container: &container,
            env: &env,
            args: &args,
            credentials: Some(Path::new("/tmp/p/sa")),
        });
        let text = a.join(" ");
        assert!(
            text.starts_with("run --rm --name k8s_chat-0_ns_12345678 --network host"),
            "{text}"
        );
        assert!(text.contains("--user 65532:65532"), "{text}");
        assert!(text.contains("--read-only"), "{text}");
        assert!(
            text.contains("--volume /tmp/p/sa:/var/run/secrets/kubernetes.io/serviceaccount:ro"),
            "{text}"
        );
        assert!(
            text.ends_with("--env CHAT_BIND=127.1.0.2 parley/chat-node:0.1.0 --x"),
            "{text}"
        );
        assert_eq!(
            name("ns", "chat-0", "1234567890ab"),
            "k8s_chat-0_ns_12345678"
        );
    }
}
