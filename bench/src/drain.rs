//! The drain measurement: sessions on one node, that node told to stop
//! (SIGTERM), and what its clients and the other nodes see. Each client
//! does what PROTOCOL.md asks of one: on `reconnect` it goes to the
//! `address` named (else asks `/v1/route`), then `sync`s from the last
//! `pts` it processed. Meanwhile a sender on another node keeps writing to
//! the drained users, so the run also shows that nothing acknowledged is
//! lost or seen twice across the move.
//!
//! Reported: when the sessions were told (first, last), connects per second
//! on the other nodes (each second, and the peak), how the sessions spread
//! over them, the time from SIGTERM to the last session settled elsewhere
//! and to the node's exit, and the exactly-once check.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::http;
use crate::session::{Ws, connect};

/// What to run.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chat-drain", about = "Measures a chat node's drain")]
pub struct DrainArgs {
    /// The node to drain, host:port.
    #[arg(long)]
    pub drain: String,
    /// Its process id (it gets SIGTERM).
    #[arg(long)]
    pub drain_pid: u32,
    /// The other nodes, host:port, comma-separated (the sender uses the first).
    #[arg(long, value_delimiter = ',', required = true)]
    pub others: Vec<String>,
    /// Admin token of the nodes.
    #[arg(long, env = "CHAT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Sessions on the drained node (one user each).
    #[arg(long, default_value_t = 15_000)]
    pub sessions: usize,
    /// Messages per second the sender writes to drained users meanwhile.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Sessions connecting at once while the run is set up.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Seconds to wait for every session to settle elsewhere.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
    /// Prefix of user names.
    #[arg(long, default_value = "d-")]
    pub prefix: String,
    /// Also write the report here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// What a drain did.
#[derive(Debug, Serialize)]
pub struct DrainReport {
    pub command: String,
    pub sessions: usize,
    /// Seconds from SIGTERM to the first and the last `reconnect` received.
    pub told_first_s: f64,
    pub told_last_s: f64,
    /// Sessions closed by the node without a `reconnect` (the grace ran out).
    pub closed_untold: usize,
    /// New connections completed on the other nodes, per second since SIGTERM.
    pub connects_per_s: Vec<usize>,
    pub peak_connects_per_s: usize,
    /// Where the sessions went (the address each `reconnect` named, or the route).
    pub moved_to: BTreeMap<String, usize>,
    /// Seconds from SIGTERM to the last session connected and synced elsewhere.
    pub settled_s: f64,
    /// Seconds from SIGTERM until the drained process was gone.
    pub node_exit_s: Option<f64>,
    /// Messages the sender had acknowledged (`sent`).
    pub sent: usize,
    /// Acknowledged messages a receiver never got (live or by sync).
    pub missing: usize,
    /// `msg` frames whose `pts` the client already had (it drops them).
    pub repeated_pts: usize,
    pub errors: Vec<String>,
}

/// What one drained client saw.
#[derive(Default)]
struct Seen {
    /// pts -> message id, live and synced.
    by_pts: HashMap<u64, String>,
    repeated: usize,
    last_pts: u64,
}

impl Seen {
    fn take(&mut self, pts: u64, id: &str) {
        if self.by_pts.insert(pts, id.to_owned()).is_some() {
            self.repeated += 1;
        }
        self.last_pts = self.last_pts.max(pts);
    }
}

/// Timestamps the clients record, since SIGTERM.
#[derive(Default)]
struct Times {
    told: Vec<f64>,
    connected: Vec<f64>,
    settled: Vec<f64>,
    moved_to: BTreeMap<String, usize>,
    closed_untold: usize,
    errors: Vec<String>,
}

/// Runs the measurement.
pub async fn run_drain(args: DrainArgs) -> Result<DrainReport, String> {
    let users: Vec<String> = (0..args.sessions)
        .map(|i| format!("{}{i}", args.prefix))
        .collect();
    let tokens: Vec<String> = futures_util::stream::iter(users.iter().cloned())
        .map(|u| {
            let (node, admin) = (args.drain.clone(), args.admin_token.clone());
            async move { http::issue_token(&node, &admin, &u).await }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let clients: Vec<Ws> = futures_util::stream::iter(tokens.iter().cloned())
        .map(|t| {
            let node = args.drain.clone();
            async move { connect(&node, &t, "drain").await }
        })
        .buffered(args.connect_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    eprintln!("chat-drain: {} sessions on {}", clients.len(), args.drain);

    // The sender, on another node, writes to random drained users.
    let sender_token =
        http::issue_token(&args.others[0], &args.admin_token, "drain-sender").await?;
    let mut sender = connect(&args.others[0], &sender_token, "sender").await?;
    let acked: Arc<Mutex<HashMap<String, HashSet<String>>>> = Arc::default();
    let stop_sending = Arc::new(tokio::sync::Notify::new());

    let start = Instant::now();
    let times: Arc<Mutex<Times>> = Arc::default();
    let mut tasks = Vec::with_capacity(clients.len());
    for ((ws, token), user) in clients.into_iter().zip(tokens).zip(users.iter().cloned()) {
        let (times, others) = (times.clone(), args.others.clone());
        tasks.push(tokio::spawn(async move {
            follow(ws, token, user, others, start, times).await
        }));
    }
    let sending = {
        let (acked, stop) = (acked.clone(), stop_sending.clone());
        let (users, rate) = (users.clone(), args.rate.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tick.tick() => {}
                }
                let to = &users[rand::random_range(0..users.len())];
                n += 1;
                let frame =
                    json!({"type":"send","id":format!("s-{n}"),"to":to,"kind":"text","body":"x"});
                if sender
                    .send(WsMessage::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
                // The reply comes before any other frame for this request.
                while let Some(Ok(m)) = sender.next().await {
                    let WsMessage::Text(t) = m else { continue };
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    if v["type"] == "sent" {
                        let id = v["msg"]["id"].as_str().unwrap_or_default().to_owned();
                        acked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(to.clone())
                            .or_default()
                            .insert(id);
                        break;
                    }
                    if v["type"] == "error" {
                        break;
                    }
                }
            }
        })
    };
    // Traffic first, then the drain.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let term = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &args.drain_pid.to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if !killed.success() {
        return Err(format!("cannot signal {}", args.drain_pid));
    }
    let offset = term.duration_since(start).as_secs_f64();
    let exit_watch = tokio::spawn(async move {
        let proc = format!("/proc/{}", args.drain_pid);
        loop {
            if !std::path::Path::new(&proc).exists() {
                return term.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let deadline = Duration::from_secs(args.timeout_s);
    let mut seen = Vec::with_capacity(tasks.len());
    for (t, user) in tasks.into_iter().zip(users.iter()) {
        match tokio::time::timeout(deadline.saturating_sub(term.elapsed()), t).await {
            Ok(Ok(Ok(s))) => seen.push((user.clone(), s)),
            Ok(Ok(Err(e))) => times
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .errors
                .push(e),
            _ => times
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .errors
                .push(format!("{user}: did not settle")),
        }
    }
    // Let the last sends land, then stop and count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_sending.notify_one();
    let _ = sending.await;
    let node_exit_s = tokio::time::timeout(Duration::from_secs(30), exit_watch)
        .await
        .ok()
        .and_then(Result::ok);
    // Everything acknowledged must be in each receiver's view: what came
    // live, and a final sync of the rest (from the last pts it has).
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|p| p.into_inner()));
    let mut missing = 0;
    let mut repeated = 0;
    for (user, (mut ws, mut s)) in seen {
        catch_up(&mut ws, &mut s).await;
        repeated += s.repeated;
        let have: HashSet<&String> = s.by_pts.values().collect();
        missing += acked
            .get(&user)
            .map_or(0, |ids| ids.iter().filter(|i| !have.contains(i)).count());
        let _ = ws.close(None).await;
    }
    let t = std::mem::take(&mut *times.lock().unwrap_or_else(|p| p.into_inner()));
    let since = |v: &[f64]| v.iter().map(|x| x - offset).collect::<Vec<f64>>();
    let (told, connected, settled) = (since(&t.told), since(&t.connected), since(&t.settled));
    let seconds = connected
        .iter()
        .fold(0.0f64, |m, x| m.max(*x))
        .ceil()
        .max(0.0) as usize
        + 1;
    let mut per_s = vec![0usize; seconds];
    for c in &connected {
        per_s[(c.max(0.0)) as usize] += 1;
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::min);
    Ok(DrainReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        sessions: args.sessions,
        told_first_s: min(&told),
        told_last_s: max(&told),
        closed_untold: t.closed_untold,
        peak_connects_per_s: per_s.iter().copied().max().unwrap_or(0),
        connects_per_s: per_s,
        moved_to: t.moved_to,
        settled_s: max(&settled),
        node_exit_s,
        sent: acked.values().map(HashSet::len).sum(),
        missing,
        repeated_pts: repeated,
        errors: t.errors.into_iter().take(20).collect(),
    })
}

/// One drained client: reads until told to go, goes, syncs.
async fn follow(
    mut ws: Ws,
    token: String,
    user: String,
    others: Vec<String>,
    start: Instant,
    times: Arc<Mutex<Times>>,
) -> Result<(Ws, Seen), String> {
    let mut seen = Seen::default();
    let mut address = None;
    while let Some(m) = ws.next().await {
        let Ok(WsMessage::Text(t)) = m else {
            if matches!(m, Ok(WsMessage::Close(_)) | Err(_)) {
                break;
            }
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        match v["type"].as_str() {
            Some("msg") => seen.take(
                v["pts"].as_u64().unwrap_or(0),
                v["msg"]["id"].as_str().unwrap_or(""),
            ),
            Some("reconnect") => {
                times
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .told
                    .push(start.elapsed().as_secs_f64());
                address = v["address"].as_str().map(str::to_owned);
                break;
            }
            _ => {}
        }
    }
    if address.is_none() {
        times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed_untold += 1;
    }
    let _ = ws.close(None).await;
    let target = match address {
        Some(a) => a,
        None => route(&others[0]).await.unwrap_or_else(|| others[0].clone()),
    };
    let mut ws = connect(&target, &token, "drain")
        .await
        .map_err(|e| format!("{user}: {e}"))?;
    {
        let mut t = times.lock().unwrap_or_else(|p| p.into_inner());
        t.connected.push(start.elapsed().as_secs_f64());
        *t.moved_to.entry(target).or_default() += 1;
    }
    catch_up(&mut ws, &mut seen).await;
    times
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .settled
        .push(start.elapsed().as_secs_f64());
    Ok((ws, seen))
}

/// `sync` from the last pts the client has until `more` is false; live
/// `msg` frames arriving meanwhile are taken too.
async fn catch_up(ws: &mut Ws, seen: &mut Seen) {
    loop {
        let q = json!({"type":"sync","after":seen.last_pts,"limit":1000});
        if ws
            .send(WsMessage::Text(q.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        let more = loop {
            let Some(Ok(m)) = ws.next().await else { return };
            let WsMessage::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap_or_default();
            match v["type"].as_str() {
                Some("msg") => seen.take(
                    v["pts"].as_u64().unwrap_or(0),
                    v["msg"]["id"].as_str().unwrap_or(""),
                ),
                Some("synced") => {
                    for e in v["entries"].as_array().into_iter().flatten() {
                        seen.take(
                            e["pts"].as_u64().unwrap_or(0),
                            e["msg"]["id"].as_str().unwrap_or(""),
                        );
                    }
                    break v["more"].as_bool().unwrap_or(false);
                }
                Some("error") => return,
                _ => {}
            }
        };
        if !more {
            return;
        }
    }
}

/// The address `/v1/route` of `node` gives.
async fn route(node: &str) -> Option<String> {
    let r = http::request("GET", &format!("http://{node}/v1/route"), &[], vec![])
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    v["address"].as_str().map(str::to_owned)
}
