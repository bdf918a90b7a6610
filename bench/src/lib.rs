//! # chat-bench
//!
//! The load generator of parley: opens authenticated sessions spread over
//! running chat nodes, sends messages at a target rate between random pairs
//! of users, and reports delivered messages per second, end-to-end latency
//! from `send` to the receiver's `msg`, errors by code, each node's memory
//! per session, and any loss or duplication among acknowledged messages.
//! It speaks the wire protocol through the node's own protocol types, so
//! it cannot drift from what the nodes parse and send.
//!
//! One process stays under the per-process open-file limit; larger runs
//! start several processes with different `--prefix`es (scripts/bench.sh)
//! and merge their reports.
//!
//! # Layout
//!
//! Data flows one way: this module issues tokens and drives the phases,
//! [`session`] opens clients and records what they receive into [`stats`],
//! [`sync`] runs the catch-up phase, and [`report`] holds what comes out.
//!
//! - this module: the flags ([`Args`]) and the run: connect, traffic at the
//!   target rate, drain, catch-up.
//! - `session`: one WebSocket client: connect, a writer task, a reader task
//!   that accounts for every frame.
//! - `stats`: the live counters of a run and the exactly-once check.
//! - `sync`: the catch-up phase (reconnect, `sync` the whole inbox, check it).
//! - `report`: the JSON report and its parts (latency percentiles, memory).
//! - `cpu`: CPU time of the watched processes over the measuring window.
//! - `http`: the small HTTP/1.1 client for tokens and `/metrics`.
//! - [`drain`]: the drain measurement behind the `chat-drain` binary.

mod cpu;
pub mod drain;
mod http;
mod report;
mod session;
mod stats;
mod sync;

pub use cpu::{CpuUse, Watched};
pub use report::{Latency, NodeMemory, Report, SyncReport};

/// What both binaries do with a run's outcome: print the report as JSON,
/// also write it to `json` when given, or print the error; the exit code.
pub fn finish<T: serde::Serialize>(
    program: &str,
    outcome: Result<T, String>,
    json: Option<std::path::PathBuf>,
) -> std::process::ExitCode {
    match outcome {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            println!("{text}");
            if let Some(path) = json
                && let Err(e) = std::fs::write(&path, &text)
            {
                eprintln!("{program}: cannot write {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::mpsc;

use chat_node::protocol::Kind;
use chat_node::protocol::client::{Command, Request, SendRequest};

use self::session::{Shared, now_us};
use self::stats::{Stats, exactly_once};

/// What to run.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chat-bench", about = "Load generator for parley chat nodes")]
pub struct Args {
    /// Nodes as host:port, comma-separated; sessions are spread over them.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Admin token of the nodes (to issue user tokens).
    #[arg(long, env = "CHAT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Users to create.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Sessions (devices) per user; a user's devices go to different nodes.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Messages per second to send in total; 0 only connects (idle run).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Seconds of measured traffic.
    #[arg(long, default_value_t = 20)]
    pub duration_s: u64,
    /// Seconds of traffic before measuring starts.
    #[arg(long, default_value_t = 3)]
    pub warmup_s: u64,
    /// Only pair users whose sessions are on different nodes.
    #[arg(long)]
    pub cross_node: bool,
    /// One-to-one: each user writes to one of its this many contacts (the
    /// users after it, skipping those on its own node with --cross-node),
    /// so conversations repeat, as between people who know each other;
    /// 0: to anyone, so most messages open a new conversation.
    #[arg(long, default_value_t = 0)]
    pub contacts: usize,
    /// Prefix of user names and client ids (distinct per process).
    #[arg(long, default_value = "u")]
    pub prefix: String,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Keep the sessions open this many seconds after the run (to look at them).
    #[arg(long, default_value_t = 0)]
    pub hold_s: u64,
    /// After the traffic, this many users (the first ones) reconnect and
    /// sync their whole inbox, checked against what was acknowledged.
    #[arg(long, default_value_t = 0)]
    pub sync_users: usize,
    /// Processes whose CPU use over the measuring window goes in the
    /// report, as name=pid (comma-separated); the generator is always there.
    #[arg(long, value_delimiter = ',')]
    pub watch: Vec<Watched>,
    /// Microseconds the generator's one thread sleeps between passes over
    /// what arrived (see `traffic`); 0 only yields to the runtime (and
    /// spins). Measured at 20,000 msg/s: 0 costs twice the CPU, 500
    /// raised the median latency it reports to about 40 ms.
    #[arg(long, default_value_t = 100)]
    pub tick_us: u64,
    /// Name of the scenario in the report.
    #[arg(long, default_value = "run")]
    pub label: String,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Group scenario: users form groups of this many (consecutive users,
    /// so members spread over the nodes), and every message goes to a
    /// random group from a random member; 0 sends one-to-one.
    #[arg(long, default_value_t = 0)]
    pub group_size: usize,
}

/// A session's writer: frames to send on it.
type Writer = mpsc::Sender<String>;
/// (user, device) and how opening its session went.
type Opened = ((usize, usize), Result<Writer, String>);

/// Runs one load-generator process.
pub async fn run(args: Args) -> Result<Report, String> {
    let n = args.nodes.len();
    if args.group_size == 0 && args.rate > 0 {
        check_contacts(
            args.contacts,
            args.users,
            if args.cross_node { n } else { 1 },
        )?;
    }
    let node_of = |user: usize, device: usize| (user + device) % n;
    let user_name = |i: usize| format!("{}{i}", args.prefix);
    let mut memory: Vec<NodeMemory> = Vec::new();
    for node in &args.nodes {
        memory.push(NodeMemory {
            node: node.clone(),
            sessions: 0,
            rss_before_bytes: http::node_rss(node).await,
            rss_connected_bytes: 0,
            rss_end_bytes: 0,
            bytes_per_session: 0.0,
        });
    }

    let tokens: Vec<String> = futures_util::stream::iter(0..args.users)
        .map(|i| {
            let node = args.nodes[i % n].clone();
            let (admin, user) = (args.admin_token.clone(), user_name(i));
            async move { http::issue_token(&node, &admin, &user).await }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let groups = if args.group_size > 0 {
        create_groups(&args, &tokens, &user_name).await?
    } else {
        Vec::new()
    };
    let sampled: std::collections::HashSet<String, _> = (0..args.sync_users.min(args.users))
        .map(user_name)
        .collect();
    let shared = Arc::new(Shared {
        // Warm-up, window and a margin for the rate not being exact.
        stats: Mutex::new(Stats::with_capacity(
            (u64::from(args.rate) * (args.warmup_s + args.duration_s + 2)) as usize,
        )),
        window_start_us: 0.into(),
        window_end_us: 0.into(),
        expected_per_message: if args.group_size > 0 {
            (args.group_size * args.devices - 1) as u32
        } else {
            (2 * args.devices - 1) as u32
        },
        sampled_groups: groups
            .iter()
            .map(|(id, members)| {
                let names = members
                    .iter()
                    .map(|&u| user_name(u))
                    .filter(|n| sampled.contains(n));
                (id.clone(), names.collect())
            })
            .collect(),
        sampled,
    });
    let started = Instant::now();
    let slots: Vec<(usize, usize)> = (0..args.users)
        .flat_map(|u| (0..args.devices).map(move |d| (u, d)))
        .collect();
    let opened: Vec<Opened> = futures_util::stream::iter(slots)
        .map(|(u, d)| {
            let (node, token, shared) = (
                args.nodes[node_of(u, d)].clone(),
                tokens[u].clone(),
                shared.clone(),
            );
            async move { ((u, d), session::open(&node, &token, shared).await) }
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .collect()
        .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let mut senders: Vec<Vec<Option<mpsc::Sender<String>>>> =
        vec![vec![None; args.devices]; args.users];
    let mut failures = 0usize;
    for ((u, d), r) in opened {
        match r {
            Ok(tx) => {
                senders[u][d] = Some(tx);
                memory[node_of(u, d)].sessions += 1;
            }
            Err(e) => {
                if failures < 3 {
                    eprintln!("chat-bench: connect failed: {e}");
                }
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(format!("{failures} sessions failed to connect"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for m in memory.iter_mut() {
        m.rss_connected_bytes = http::node_rss(&m.node).await;
        if m.sessions > 0 {
            m.bytes_per_session =
                m.rss_connected_bytes.saturating_sub(m.rss_before_bytes) as f64 / m.sessions as f64;
        }
    }

    let mut cpu = Vec::new();
    if args.rate > 0 {
        let (sends, used) = traffic(&args, &senders, &shared, n, &groups).await;
        cpu = used;
        drain(&shared, sends).await;
    }
    for m in memory.iter_mut() {
        m.rss_end_bytes = http::node_rss(&m.node).await;
    }
    let sync = if args.rate > 0 && args.sync_users > 0 {
        let users: Vec<(String, String, String)> = (0..args.sync_users.min(args.users))
            .map(|u| {
                (
                    user_name(u),
                    args.nodes[node_of(u, 0)].clone(),
                    tokens[u].clone(),
                )
            })
            .collect();
        let expected = std::mem::take(
            &mut shared
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .inbox_expected,
        );
        Some(sync::run(&users, &expected).await)
    } else {
        None
    };
    let mut st = std::mem::take(&mut *shared.stats.lock().unwrap_or_else(|p| p.into_inner()));
    let (lost, duplicated) = exactly_once(&st);
    let window = args.duration_s.max(1) as f64;
    let per_copy = cpu
        .iter()
        .map(|c| {
            let us = c.percent_of_one_core / 100.0 * window * 1e6;
            (c.name.clone(), us / st.delivered_in_window.max(1) as f64)
        })
        .collect();
    let report = Report {
        group_size: args.group_size,
        groups: groups.len(),
        cpu_us_per_delivered_copy: per_copy,
        label: args.label.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        nodes: args.nodes.clone(),
        users: args.users,
        devices: args.devices,
        sessions: args.users * args.devices,
        connect_seconds,
        target_rate: args.rate,
        duration_s: args.duration_s,
        sent_acked: st.acked_in_window,
        sent_per_s: st.acked_in_window as f64 / window,
        delivered: st.delivered_in_window,
        delivered_per_s: st.delivered_in_window as f64 / window,
        delivered_after_window: st.delivered_after_window,
        saturated: report::saturated(st.delivered_in_window, st.delivered_after_window),
        latency: Latency::from_us(&mut st.latencies_us),
        lost,
        duplicated,
        errors: st.errors.clone(),
        backpressure: st.backpressure,
        sessions_closed: st.closed.clone(),
        node_memory: memory,
        generator_rss_bytes: chat_node::resident_memory_bytes().unwrap_or(0),
        cpu,
        sync,
    };
    if args.hold_s > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_s)).await;
    }
    drop(senders);
    Ok(report)
}

/// Waits until every send has its reply and every acknowledged message has
/// all its deliveries, or nothing changed for 3 seconds (at most a minute):
/// what is still missing then is lost.
async fn drain(shared: &Shared, sends: u64) {
    let outstanding = || {
        let st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
        let replies = st.acked.len() as u64 + st.errors.values().sum::<u64>();
        let missing: u64 = st
            .acked
            .iter()
            .map(|(id, want)| {
                u64::from(want.saturating_sub(st.deliveries.get(id).copied().unwrap_or(0)))
            })
            .sum();
        (sends.saturating_sub(replies), missing)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = ((u64::MAX, u64::MAX), Instant::now());
    while Instant::now() < deadline {
        let now = outstanding();
        if now == (0, 0) {
            return;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends at the target rate for warm-up plus the measured window; returns
/// how many sends were queued and the CPU use of the watched processes over
/// the window.
async fn traffic(
    args: &Args,
    senders: &[Vec<Option<mpsc::Sender<String>>>],
    shared: &Shared,
    n: usize,
    groups: &[(String, Vec<usize>)],
) -> (u64, Vec<CpuUse>) {
    let mut watched = args.watch.clone();
    watched.push(Watched {
        name: format!("chat-bench {}", args.prefix.trim_end_matches('-')),
        pid: std::process::id(),
    });
    let mut snapshot = None;
    let users = args.users;
    let total = Duration::from_secs(args.warmup_s + args.duration_s);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut seq: u64 = 0;
    let mut rng = rand::rng();
    let mut window_open = false;
    let mut queued: u64 = 0;
    while started.elapsed() < total {
        if !window_open && started.elapsed() >= Duration::from_secs(args.warmup_s) {
            shared.window_start_us.store(now_us(), Ordering::Relaxed);
            snapshot = Some(cpu::Snapshot::take(&watched));
            window_open = true;
        }
        let due = (started.elapsed().as_secs_f64() * f64::from(args.rate)) as u64;
        while sent < due {
            sent += 1;
            seq += 1;
            let (from, frame) = if groups.is_empty() {
                let from = rng.random_range(0..users);
                let stride = if args.cross_node { n } else { 1 };
                let to = if args.contacts > 0 {
                    contact(from, rng.random_range(0..args.contacts), users, stride)
                } else {
                    let mut to = rng.random_range(0..users);
                    // Another user; with --cross-node, one whose first device is elsewhere.
                    while to == from || (stride > 1 && to % n == from % n) {
                        to = rng.random_range(0..users);
                    }
                    to
                };
                (from, send_frame(&args.prefix, seq, Target::User(to)))
            } else {
                let (id, members) = &groups[rng.random_range(0..groups.len())];
                let from = members[rng.random_range(0..members.len())];
                (from, send_frame(&args.prefix, seq, Target::Group(id)))
            };
            match &senders[from][0] {
                Some(tx) if tx.try_send(frame).is_ok() => queued += 1,
                _ => {
                    shared
                        .stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .backpressure += 1
                }
            }
        }
        // The generator's one thread sleeps a tick, then handles every frame
        // that arrived meanwhile in one pass (the yield runs after the I/O
        // driver is polled): one wake-up per tick instead of one per frame,
        // which was most of its CPU. A receive time is read up to a tick late,
        // so latencies are over-estimated by at most the tick (--tick-us).
        if args.tick_us > 0 {
            std::thread::sleep(Duration::from_micros(args.tick_us));
        }
        tokio::task::yield_now().await;
    }
    shared.window_end_us.store(now_us(), Ordering::Relaxed);
    (queued, snapshot.map(|s| s.since()).unwrap_or_default())
}

/// The `k`-th (from 0) contact of user `from` among `users`: the users after
/// it, wrapping around, leaving out those whose first session is on the
/// node of `from`'s (user `u`'s is on node `u % stride`) when `stride` is
/// above 1 (--cross-node: the number of nodes). `check_contacts` makes
/// sure there are `k + 1` of them.
fn contact(from: usize, k: usize, users: usize, stride: usize) -> usize {
    (1..users)
        .map(|o| (from + o) % users)
        .filter(|to| stride <= 1 || to % stride != from % stride)
        .nth(k)
        .expect("check_contacts bounds k")
}

/// Whether every user has `contacts` contacts (see `contact`).
pub fn check_contacts(contacts: usize, users: usize, stride: usize) -> Result<(), String> {
    // The users off a node's: all but the most that share one.
    let others = if stride > 1 {
        users - users.div_ceil(stride)
    } else {
        users.saturating_sub(1)
    };
    if contacts > others {
        return Err(format!(
            "--contacts {contacts}: each user has only {others} others{}",
            if stride > 1 { " on other nodes" } else { "" }
        ));
    }
    Ok(())
}

/// Whom a benchmark message goes to.
enum Target<'a> {
    /// User number n.
    User(usize),
    Group(&'a str),
}

/// Creates the groups of the group scenario: users `k·size .. (k+1)·size`
/// form group `k`, created by its first member over a connection of its
/// own (before any session opens, so the `created` messages are only in
/// inboxes). Returns (group id, members).
async fn create_groups(
    args: &Args,
    tokens: &[String],
    user_name: &dyn Fn(usize) -> String,
) -> Result<Vec<(String, Vec<usize>)>, String> {
    let size = args.group_size;
    if size < 2 || size > args.users {
        return Err(format!(
            "--group-size must be 2 to --users ({})",
            args.users
        ));
    }
    let n = args.nodes.len();
    let plans: Vec<(usize, Vec<usize>)> = (0..args.users / size)
        .map(|k| (k, (k * size..(k + 1) * size).collect()))
        .collect();
    futures_util::stream::iter(plans)
        .map(|(k, members)| {
            let creator = members[0];
            let node = args.nodes[creator % n].clone();
            let token = tokens[creator].clone();
            let names: Vec<String> = members[1..].iter().map(|&u| user_name(u)).collect();
            async move {
                let id = session::create_group(&node, &token, &format!("bench-{k}"), names).await?;
                Ok::<_, String>((id, members))
            }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The `send` of message `seq` of this process: the body is the send time
/// in µs, from which the receivers' readers take the latency.
fn send_frame(prefix: &str, seq: u64, target: Target) -> String {
    let (to, group) = match target {
        Target::User(u) => (format!("{prefix}{u}"), None),
        Target::Group(g) => (String::new(), Some(g.to_owned())),
    };
    let request = Request {
        rid: None,
        command: Command::Send(SendRequest {
            id: format!("{prefix}-{seq}"),
            to,
            group,
            kind: Kind::Text,
            body: now_us().to_string(),
            media: None,
        }),
    };
    session::encode(&request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_node::protocol::client::{Limits, parse};

    #[test]
    fn send_frames_are_sends_the_node_accepts() {
        let frame = send_frame("p1-", 7, Target::User(42));
        let limits = Limits {
            max_body_bytes: 4096,
            max_group_members: 500,
        };
        let Ok(Request {
            rid: None,
            command: Command::Send(send),
        }) = parse(&frame, &limits)
        else {
            panic!("not a send: {frame}");
        };
        assert_eq!((send.id.as_str(), send.to.as_str()), ("p1--7", "p1-42"));
        assert_eq!(send.kind, Kind::Text);
        assert!(send.body.parse::<u64>().is_ok_and(|t| t > 0), "{frame}");
        // Nothing but what a send needs goes on the wire.
        assert!(!frame.contains("null"), "{frame}");
    }

    #[test]
    fn contacts_are_other_users_and_off_the_senders_node_with_a_stride() {
        for (users, stride, contacts) in [
            (10, 1, 3),
            (10, 1, 9),
            (2000, 3, 10),
            (12, 3, 8),
            (11, 3, 7),
        ] {
            check_contacts(contacts, users, stride).unwrap();
            for from in 0..users {
                let peers: std::collections::BTreeSet<usize> = (0..contacts)
                    .map(|k| contact(from, k, users, stride))
                    .collect();
                assert_eq!(peers.len(), contacts, "distinct: {users} {stride} {from}");
                for &to in &peers {
                    assert!(to < users && to != from);
                    if stride > 1 {
                        assert_ne!(to % stride, from % stride, "{from} -> {to}");
                    }
                }
            }
        }
        // More contacts than there are other users (on other nodes): refused.
        assert!(check_contacts(10, 10, 1).is_err());
        assert!(check_contacts(9, 12, 3).is_err());
        assert!(check_contacts(7, 11, 3).is_ok());
        assert!(check_contacts(8, 11, 3).is_err());
        assert!(check_contacts(0, 2, 1).is_ok());
    }
}
