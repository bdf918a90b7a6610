//! SQL servers for the archive tests. A MariaDB or PostgreSQL of a test's
//! own, on its own port and data directory, for tests that kill, stop or
//! restart the SQL server during traffic, which must not touch the servers
//! other tests share; and a clean database on the shared servers that
//! scripts/services.sh starts, for tests that need nothing more.
//!
//! std only: the servers run from their own binaries and are spoken to
//! through their command-line clients (`mariadb`, `psql`), as the login
//! `parley` / `parley` over TCP, the way the node reaches them.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Which SQL server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    MariaDb,
    Postgres,
}

/// The login and database every SQL server of the tests has (the shared
/// ones get them from scripts/services.sh, private ones at first start).
const USER: &str = "parley";
const PASSWORD: &str = "parley";
const DATABASE: &str = "parley";
/// Said when the shared server fails.
const SHARED: &str = " (the shared servers are started by scripts/services.sh)";
/// How long a server may take to start, stop or answer, on a loaded machine.
const LIMIT: Duration = Duration::from_secs(60);
/// How long one run of a command-line client may take.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

impl SqlKind {
    /// The port of the shared server (scripts/services.sh).
    fn shared_port(self) -> u16 {
        match self {
            SqlKind::MariaDb => 3306,
            SqlKind::Postgres => 5432,
        }
    }

    /// The URL of database `db` on 127.0.0.1:`port`.
    fn url(self, port: u16, db: &str) -> String {
        let scheme = match self {
            SqlKind::MariaDb => "mysql",
            SqlKind::Postgres => "postgres",
        };
        format!("{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}/{db}")
    }
}

/// The URL of the `parley` database on the shared server.
pub fn shared_url(kind: SqlKind) -> String {
    kind.url(kind.shared_port(), DATABASE)
}

/// (Re)creates database `name` on the shared server (scripts/services.sh)
/// and returns its URL. `name`: lowercase letters, digits and `_`.
pub fn fresh_database(kind: SqlKind, name: &str) -> String {
    drop_database(kind, name);
    let create = match kind {
        SqlKind::MariaDb => format!("CREATE DATABASE `{name}`"),
        SqlKind::Postgres => format!("CREATE DATABASE \"{name}\""),
    };
    run_sql(&shared_url(kind), &[&create]).unwrap_or_else(|e| panic!("{e}{SHARED}"));
    kind.url(kind.shared_port(), name)
}

/// Drops database `name` on the shared server, if it is there.
pub fn drop_database(kind: SqlKind, name: &str) {
    assert!(
        name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database name {name:?}: lowercase letters, digits and _, at most 63"
    );
    let drop = match kind {
        SqlKind::MariaDb => format!("DROP DATABASE IF EXISTS `{name}`"),
        // FORCE: a node of a failed test may still hold connections.
        SqlKind::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    };
    run_sql(&shared_url(kind), &[&drop]).unwrap_or_else(|e| panic!("{e}{SHARED}"));
}

/// Runs `sql` (one statement, or several for MariaDB or in one
/// transaction for PostgreSQL) against `url` through the command-line
/// client; its output, one row a line, columns tab-separated (MariaDB) or
/// `|`-separated (PostgreSQL). Panics with the client's error.
pub fn query(url: &str, sql: &str) -> String {
    run_sql(url, &[sql]).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs each statement by itself (PostgreSQL refuses `CREATE DATABASE` in
/// a transaction, which one `-c` of several statements is).
fn run_sql(url: &str, statements: &[&str]) -> Result<String, String> {
    let (kind, user, password, port, db) = parse_url(url);
    let mut cmd = match kind {
        SqlKind::MariaDb => {
            let mut c = Command::new("mariadb");
            // utf8mb4 spelled out: without the Debian client config the
            // client speaks a charset that refuses 4-byte characters.
            c.args(words(
                "--no-defaults --protocol=TCP -h 127.0.0.1 -N -B --connect-timeout=10",
            ))
            .arg("--default-character-set=utf8mb4")
            .args([format!("--port={port}"), format!("--user={user}")])
            .args([format!("--password={password}"), format!("--database={db}")])
            .arg("-e")
            .arg(statements.join(";\n"));
            c
        }
        SqlKind::Postgres => {
            let mut c = Command::new("psql");
            c.args(words("-X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1"))
                .args(["-p", &port.to_string(), "-U", user, "-d", db])
                .env("PGPASSWORD", password)
                .env("PGCONNECT_TIMEOUT", "10");
            for s in statements {
                c.arg("-c").arg(s);
            }
            c
        }
    };
    let out = output_within(&mut cmd, CLIENT_LIMIT).map_err(|e| {
        format!("{e} (the client is installed with the server: scripts/services.sh installs it)")
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{statements:?} on {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `scheme://user:password@host:port/db`, as [`SqlKind::url`] writes it.
fn parse_url(url: &str) -> (SqlKind, &str, &str, u16, &str) {
    let parsed = (|| {
        let (scheme, rest) = url.split_once("://")?;
        let kind = match scheme {
            "mysql" | "mariadb" => SqlKind::MariaDb,
            "postgres" | "postgresql" => SqlKind::Postgres,
            _ => return None,
        };
        let (login, rest) = rest.split_once('@')?;
        let (user, password) = login.split_once(':')?;
        let (host, db) = rest.split_once('/')?;
        let port = host.rsplit_once(':')?.1.parse().ok()?;
        Some((kind, user, password, port, db))
    })();
    parsed.unwrap_or_else(|| panic!("not a URL of a test SQL server: {url}"))
}

/// A command's output, or an error once it has run `limit` (then killed).
fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = pipe(child.stdout.take().map(|r| Box::new(r) as _));
    let stderr = pipe(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: no answer within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

macro_rules! private_server {
    ($name:ident, $kind:expr, $what:literal) => {
        #[doc = concat!("A ", $what, " of a test's own on `port`, its data in `dir`.")]
        pub struct $name(Private);

        impl $name {
            /// Initializes `dir` on first use, starts the server and waits
            /// until `parley` logs in over TCP.
            pub fn start(port: u16, dir: &Path) -> $name {
                let mut s = Private {
                    kind: $kind,
                    port,
                    dir: dir.to_owned(),
                    proc: None,
                };
                s.start();
                $name(s)
            }
            /// Its URL (database `parley`).
            pub fn url(&self) -> String {
                self.0.kind.url(self.0.port, DATABASE)
            }
            pub fn port(&self) -> u16 {
                self.0.port
            }
            /// SIGKILL (a crash), and waits until it is gone.
            pub fn kill(&mut self) {
                self.0.kill();
            }
            /// Clean shutdown, waited for.
            pub fn stop(&mut self) {
                self.0.stop();
            }
            /// Starts it again on the same data (stopping it cleanly first
            /// if it still runs).
            pub fn restart(&mut self) {
                self.0.stop();
                self.0.start();
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.kill();
                let _ = std::fs::remove_dir_all(&self.0.dir);
            }
        }
    };
}

private_server!(PrivatePostgres, SqlKind::Postgres, "PostgreSQL");
private_server!(PrivateMariaDb, SqlKind::MariaDb, "MariaDB");

/// What both private servers share: the process and its data.
struct Private {
    kind: SqlKind,
    port: u16,
    dir: PathBuf,
    proc: Option<Child>,
}

impl Private {
    fn start(&mut self) {
        let fresh = match self.kind {
            SqlKind::Postgres => self.init_postgres(),
            SqlKind::MariaDb => self.init_mariadb(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("server log opens");
        let mut cmd = match self.kind {
            SqlKind::Postgres => self.postgres_server(),
            SqlKind::MariaDb => self.mariadb_server(),
        };
        let child = cmd
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()));
        self.proc = Some(child);
        let deadline = Instant::now() + LIMIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            self.check_alive(deadline, "to open its port");
            std::thread::sleep(Duration::from_millis(50));
        }
        if fresh {
            self.provision(deadline);
        }
        // PostgreSQL accepts TCP while it still recovers ("starting up").
        let url = self.kind.url(self.port, DATABASE);
        while let Err(e) = run_sql(&url, &["SELECT 1"]) {
            self.check_alive(deadline, &format!("to let parley in ({e})"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics if the server exited or `deadline` has passed.
    fn check_alive(&mut self, deadline: Instant, what: &str) {
        let exited = self.proc.as_mut().and_then(|p| p.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!(
                "private {:?} exited ({status}): {}",
                self.kind,
                self.log_tail()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "private {:?} took over {LIMIT:?} {what}: {}",
                self.kind,
                self.log_tail()
            );
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Creates the data directory's system tables if it has none; whether
    /// it did (then the login is still to be made).
    fn init_postgres(&self) -> bool {
        if self.dir.join("PG_VERSION").exists() {
            return false;
        }
        std::fs::create_dir_all(&self.dir).expect("data dir");
        let socket = self.dir.join(format!(".s.PGSQL.{}", self.port));
        assert!(
            socket.as_os_str().len() < 100,
            "{}: too long a path for a unix socket",
            socket.display()
        );
        // initdb wants an empty directory (the log comes after it).
        let mut cmd = postgres_command("initdb", &self.dir);
        cmd.arg("-D").arg(&self.dir).args(words(
            "-U postgres -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 --no-sync",
        ));
        run_ok(cmd.current_dir("/"), "initdb");
        true
    }

    fn postgres_server(&self) -> Command {
        let mut cmd = postgres_command("postgres", &self.dir);
        // The socket in the data dir, so instances never meet in
        // /var/run/postgresql.
        cmd.arg("-D")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={}", self.port))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            // Crash recovery first syncs the data dir: one syncfs instead
            // of an fsync per file (seconds less after each kill).
            .args(["-c", "recovery_init_sync_method=syncfs"]);
        cmd
    }

    fn init_mariadb(&self) -> bool {
        if self.dir.join("mysql").is_dir() {
            return false;
        }
        std::fs::create_dir_all(&self.dir).expect("data dir");
        let mut cmd = mariadb_command("mariadb-install-db", &self.dir);
        // root@localhost without a password, on the socket in the data dir
        // only: whoever runs the test can provision it, root or not.
        cmd.arg(format!("--datadir={}", self.dir.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        run_ok(cmd.current_dir("/"), "mariadb-install-db");
        true
    }

    /// `--socket=` in the data dir, for the server and the superuser.
    fn mariadb_socket(&self) -> String {
        format!("--socket={}", self.dir.join("mysqld.sock").display())
    }

    fn mariadb_server(&self) -> Command {
        let mut cmd = mariadb_command("mariadbd", &self.dir);
        // --no-defaults: /etc/mysql does not matter; utf8mb4 as on the
        // shared server. No --log-error: errors go to stderr, the log.
        cmd.arg(format!("--datadir={}", self.dir.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(self.mariadb_socket())
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .args(words(
                "--character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci",
            ));
        cmd
    }

    /// The `parley` login (may create and drop databases) and database,
    /// through the superuser on the server's unix socket.
    fn provision(&mut self, deadline: Instant) {
        let mut cmd = match self.kind {
            SqlKind::Postgres => {
                let mut c = Command::new(postgres_bin("psql", &self.dir));
                c.args(words("-X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -h"))
                    .arg(&self.dir)
                    .args(["-p", &self.port.to_string(), "-c"])
                    .arg(format!(
                        "CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'"
                    ))
                    .arg("-c")
                    .arg(format!("CREATE DATABASE {DATABASE} OWNER {USER}"));
                c
            }
            SqlKind::MariaDb => {
                let mut c = Command::new(mariadb_bin("mariadb"));
                c.args(["--no-defaults", "-u", "root"])
                    .arg(self.mariadb_socket())
                    .arg("-e")
                    .arg(format!(
                        "CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';
                         CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
                         GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'localhost';
                         GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1';
                         CREATE DATABASE {DATABASE};"
                    ));
                c
            }
        };
        // PostgreSQL may still refuse while starting up: retry.
        loop {
            match output_within(&mut cmd, CLIENT_LIMIT) {
                Ok(out) if out.status.success() => return,
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr).into_owned();
                    self.check_alive(deadline, &format!("to take the login ({})", err.trim()));
                }
                Err(e) => panic!("{e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server and its children (PostgreSQL's backends, each in a
    /// process group of its own), all at once, as a crash of the machine
    /// would; then waits until none is left, since PostgreSQL refuses to
    /// start while an old backend still holds its shared memory.
    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let pids = process_tree(p.id());
            let mut cmd = Command::new("kill");
            cmd.arg("-KILL")
                .arg("--")
                .args(pids.iter().map(u32::to_string));
            // Some may have exited by now: kill's status says nothing.
            let _ = cmd.stderr(Stdio::null()).status();
            let _ = p.wait();
            let deadline = Instant::now() + LIMIT;
            while pids.iter().any(|&pid| alive(pid)) {
                assert!(
                    Instant::now() < deadline,
                    "private {:?}: {pids:?} still alive after SIGKILL",
                    self.kind
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// PostgreSQL's fast shutdown (SIGINT) or MariaDB's (SIGTERM): both
    /// roll back what is open, write out what is committed, and exit.
    fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let sig = match self.kind {
                SqlKind::Postgres => "-INT",
                SqlKind::MariaDb => "-TERM",
            };
            let ok = Command::new("kill")
                .args([sig, &p.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {}", p.id());
            let deadline = Instant::now() + LIMIT;
            while p.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = p.kill();
                    panic!("private {:?} did not stop within {LIMIT:?}", self.kind);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// When we are root, hands `dir` to system user `user` and returns its
/// uid and gid, for the server to run as (PostgreSQL refuses root, MariaDB
/// is told to switch); `None` when we are not root: it runs as we do.
fn hand_over(dir: &Path, user: &str) -> Option<(u32, u32)> {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return None;
    }
    let ids = system_user(user);
    let chown = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(dir)
        .status();
    assert!(
        chown.is_ok_and(|s| s.success()),
        "chown -R {user} {}",
        dir.display()
    );
    Some(ids)
}

/// A PostgreSQL program run as `postgres` when we are root.
fn postgres_command(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(postgres_bin(program, dir));
    if let Some((uid, gid)) = hand_over(dir, "postgres") {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// A MariaDB program that switches to `mysql` when we are root
/// (`--no-defaults` must come first).
fn mariadb_command(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(mariadb_bin(program));
    cmd.arg("--no-defaults");
    if hand_over(dir, "mysql").is_some() {
        cmd.arg("--user=mysql");
    }
    cmd
}

/// A system user's uid and gid, from /etc/passwd.
fn system_user(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .unwrap_or_else(|| {
            panic!(
                "no system user {name} (scripts/services.sh installs the server, which makes it)"
            )
        })
}

/// A PostgreSQL program: of the version `dir` was made with, else the
/// newest in Debian's /usr/lib/postgresql/N/bin.
fn postgres_bin(program: &str, dir: &Path) -> PathBuf {
    let version = std::fs::read_to_string(dir.join("PG_VERSION")).ok();
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let version = version
        .map(|v| v.trim().to_owned())
        .or(versions.last().map(u32::to_string));
    let path = Path::new("/usr/lib/postgresql")
        .join(version.unwrap_or_default())
        .join("bin")
        .join(program);
    assert!(
        path.exists(),
        "{} not found: PostgreSQL is not installed (scripts/services.sh installs it)",
        path.display()
    );
    path
}

/// A MariaDB program (mariadbd lives in /usr/sbin, off some PATHs).
fn mariadb_bin(program: &str) -> PathBuf {
    let dirs = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(program))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{program} not found: MariaDB is not installed (scripts/services.sh installs it)"
            )
        })
}

/// Arguments written as one line.
fn words(line: &str) -> std::str::SplitWhitespace<'_> {
    line.split_whitespace()
}

/// Runs `cmd` to its end; panics with its output unless it succeeds.
fn run_ok(cmd: &mut Command, what: &str) {
    let out = output_within(cmd, LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `root` and every process below it: (pid, ppid) from /proc.
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some((pid, stat_fields(pid)?.1.parse().ok()?))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// Whether `pid` runs (a zombie left to whoever reaps it does not: it
/// holds no port, file or shared memory).
fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|(state, _)| state != "Z")
}

/// State and parent pid of `pid`, from /proc/PID/stat.
fn stat_fields(pid: u32) -> Option<(String, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parens.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    Some((f.next()?.to_owned(), f.next()?.to_owned()))
}
