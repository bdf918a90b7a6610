//! A pod's process: started with only the pod's environment, stopped as a
//! kubelet stops a container (SIGTERM, SIGKILL after the grace period).

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Starts `bin` with `args` and exactly `env` (plus a PATH), its output appended to
/// `log`. The child is killed if the kubelet drops it, and by the kernel if
/// the kubelet dies, so a crashed test leaves no pod process behind.
pub fn spawn(
    bin: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> std::io::Result<Child> {
    let out = open_log(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(bin);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours;
    // nothing else runs between fork and exec. (PDEATHSIG follows the
    // spawning thread: a tokio worker, alive as long as the runtime.)
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
}

pub fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// How a stopped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited within the grace period after SIGTERM.
    Exited(Option<i32>),
    /// It was killed when the grace period ran out.
    Killed,
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub async fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<Stopped> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we own and a valid signal number has no
        // memory effects; the pid cannot have been reused while `child` holds
        // it unreaped.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    } else {
        // Already reaped: it had exited.
        return Ok(Stopped::Exited(child.try_wait()?.and_then(|s| s.code())));
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => Ok(Stopped::Exited(status?.code())),
        Err(_) => {
            child.kill().await?;
            Ok(Stopped::Killed)
        }
    }
}
