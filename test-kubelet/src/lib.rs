//! A kubelet for tests: it stands in for a node of a local control plane
//! (`scripts/control-plane.sh up`) and runs each pod whose image it knows
//! (chat-node, the operator) as a local process of that program.
//!
//! # Layout
//!
//! - [`kubelet`]: the main loop. Registers the Node, watches every pod,
//!   binds unscheduled ones to this node (there is no scheduler) and hands
//!   each of its own pods to a worker.
//! - [`node`]: the Node object and its heartbeat (Ready condition in status).
//! - [`worker`]: one task per pod: start, probe, restart, stop, finalize.
//! - [`env`](mod@env): a container's environment, resolved as a kubelet would
//!   (values, `secretKeyRef`, `configMapKeyRef`, `fieldRef`).
//! - [`process`]: spawning a pod's process and stopping it (SIGTERM, then
//!   SIGKILL after the grace period).
//! - [`probe`]: the readiness probe's HTTP GET.
//! - [`container`]: pods as podman containers instead of processes.
//! - [`credentials`]: a pod's ServiceAccount token, CA and a kubeconfig
//!   naming them, as a kubelet projects them into a container.
//! - [`status`]: pod status documents, built by pure functions.
//! - [`addr`]: each pod gets its own loopback address, so pods that all
//!   listen on the same fixed ports do not collide.

pub mod addr;
pub mod container;
pub mod credentials;
pub mod env;
pub mod kubelet;
pub mod node;
pub mod probe;
pub mod process;
pub mod status;
pub mod worker;

use std::path::PathBuf;

/// What the kubelet was told on its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Node's name.
    pub node_name: String,
    /// The programs pods run, by image; a pod of any other image fails.
    /// Unused when pods run as containers.
    pub programs: Vec<Program>,
    /// Run pods as containers of their images with podman, instead of as
    /// processes of [`Settings::programs`].
    pub podman: Option<container::Podman>,
    /// Where each pod's stdout and stderr go, one file per pod.
    pub log_dir: PathBuf,
    /// Where each pod's ServiceAccount credentials are written, a directory
    /// per pod.
    pub state_dir: PathBuf,
    /// Given to every pod as KUBERNETES_SERVICE_HOST/PORT: the local control
    /// plane's `kubernetes` Service has no endpoints.
    pub apiserver_host: String,
    pub apiserver_port: u16,
}

/// A program the kubelet runs for the pods of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Pods whose (only) container image starts with this run [`Program::bin`].
    pub image_prefix: String,
    pub bin: PathBuf,
}

impl std::str::FromStr for Program {
    type Err = String;
    /// `IMAGE_PREFIX=BIN`, as given to `--run`.
    fn from_str(s: &str) -> Result<Program, String> {
        match s.split_once('=') {
            Some((prefix, bin)) if !prefix.is_empty() && !bin.is_empty() => Ok(Program {
                image_prefix: prefix.to_owned(),
                bin: bin.into(),
            }),
            _ => Err(format!("expected IMAGE_PREFIX=PROGRAM, got {s:?}")),
        }
    }
}

/// The program that runs `image`: the longest matching prefix.
pub fn program_for<'a>(programs: &'a [Program], image: &str) -> Option<&'a Program> {
    programs
        .iter()
        .filter(|p| image.starts_with(&p.image_prefix))
        .max_by_key(|p| p.image_prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_parse_and_the_longest_prefix_wins() {
        let programs: Vec<Program> = ["parley/=/bin/a", "parley/operator=/bin/op"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            program_for(&programs, "parley/operator:1").map(|p| &p.bin),
            Some(&PathBuf::from("/bin/op"))
        );
        assert_eq!(
            program_for(&programs, "parley/chat-node:1").map(|p| &p.bin),
            Some(&PathBuf::from("/bin/a"))
        );
        assert!(program_for(&programs, "nginx:1").is_none());
        assert!("no-equals".parse::<Program>().is_err());
        assert!("=/bin/x".parse::<Program>().is_err());
    }
}
