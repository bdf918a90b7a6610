//! A Redis server of a test's own, on its own port: for tests that stop,
//! restart or stall Redis, which must not touch the Redis other tests share.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private Redis on its own port, with an append-only file so data
/// survives the restart this test does.
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    proc: Option<Child>,
}

impl PrivateRedis {
    pub fn start(port: u16, dir: &std::path::Path) -> PrivateRedis {
        let mut r = PrivateRedis {
            port,
            dir: dir.to_owned(),
            proc: None,
        };
        r.restart();
        r
    }
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.proc = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis did not start");
    }
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
    /// `-STOP` (hang: the socket stays open, nothing answers) or `-CONT`.
    pub fn signal(&self, sig: &str) {
        let pid = self.proc.as_ref().expect("redis running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PrivateRedis {
    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}
