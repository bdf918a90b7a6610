//! What one send costs Redis, alone: drives the Redis store's own `send`
//! (the script and arguments a node uses) at a private Redis, many calls
//! in flight, between random pairs of `--users` users, and reports Redis'
//! CPU time (`INFO cpu`) and memory (`INFO memory` used_memory) per send,
//! with a breakdown of the memory by key kind (`MEMORY USAGE` of a sample
//! of every kind). No node, no WebSocket, no generator: what is left is
//! the data layout and the script.
//!
//! usage: chat-redis-send --redis redis://127.0.0.1:16392/0 [--users 2000]
//! [--sends 200000] [--archive-feed] [--routes]
//! (scripts/bench.sh redis-send runs it on a private Redis.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use rand::Rng;
use redis::AsyncCommands;
use serde::Serialize;

use chat_node::archive::Archive;
use chat_node::ids::{MessageIds, now_ms};
use chat_node::protocol::{Kind, dm_conv};
use chat_node::store::redis::RedisStore;
use chat_node::store::{NewMessage, Retention, Store};

/// The cluster name of the store under test: its keys are `chat:rs:...`.
const CLUSTER: &str = "rs";

#[derive(Debug, Parser)]
#[command(
    name = "chat-redis-send",
    about = "Redis CPU and memory per one-to-one send, measured alone"
)]
struct Args {
    /// A Redis of its own: it is flushed before the run.
    #[arg(long)]
    redis: String,
    /// Users; senders and receivers are random pairs of them.
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Sends measured.
    #[arg(long, default_value_t = 200_000)]
    sends: usize,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Append every message to the archive feed, as a node with an archive
    /// does (nothing consumes it here, so it stays: its entries are counted
    /// apart in the breakdown).
    #[arg(long)]
    archive_feed: bool,
    /// Ask for both users' presence in the same step, as a clustered node does.
    #[arg(long)]
    routes: bool,
    /// Body bytes of each message.
    #[arg(long, default_value_t = 16)]
    body_bytes: usize,
    /// Name of the run in the report.
    #[arg(long, default_value = "redis-send")]
    label: String,
    /// Write the JSON report here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct KeyKind {
    keys: u64,
    /// Mean of `MEMORY USAGE` over the sampled keys of the kind.
    bytes_per_key: f64,
    /// keys x mean / sends.
    bytes_per_send: f64,
}

#[derive(Debug, Serialize)]
struct RedisSendReport {
    label: String,
    command: String,
    redis_version: String,
    users: usize,
    sends: usize,
    archive_feed: bool,
    routes: bool,
    seconds: f64,
    sends_per_s: f64,
    redis_cpu_us_per_send: f64,
    redis_user_cpu_us_per_send: f64,
    used_memory_bytes_per_send: f64,
    /// Memory by key kind (`chat:C:<kind>:...`), estimated from a sample.
    by_kind: BTreeMap<String, KeyKind>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json = args.json.clone();
    chat_bench::finish("chat-redis-send", run(args).await, json)
}

/// A field of `INFO` as a number.
fn info_field(info: &str, name: &str) -> Result<f64, String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("INFO has no {name}"))
}

/// (CPU seconds in all, user CPU seconds, used_memory bytes) of Redis now.
async fn redis_usage(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(f64, f64, f64), String> {
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    let user = info_field(&info, "used_cpu_user")?;
    let sys = info_field(&info, "used_cpu_sys")?;
    Ok((user + sys, user, info_field(&info, "used_memory")?))
}

async fn run(args: Args) -> Result<RedisSendReport, String> {
    if args.users < 2 || args.sends == 0 {
        return Err("--users must be at least 2 and --sends at least 1".into());
    }
    let client = redis::Client::open(args.redis.as_str()).map_err(|e| e.to_string())?;
    // Flushing a Redis full of a previous run takes seconds.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(300)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("{}: {e}", args.redis))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let redis_version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;

    // The node's defaults: inboxes keep 10,000 entries and 30 days,
    // client ids are remembered 24 h.
    let retention = Retention {
        max_entries: 10_000,
        max_age_ms: 30 * 86_400_000,
    };
    let mut store = RedisStore::new(&args.redis, CLUSTER, retention, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    if args.archive_feed {
        // The pool connects lazily and nothing here reads the archive.
        let sql = Archive::connect_lazy("sqlite://:memory:", Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        store = store.with_archive(Arc::new(sql), u64::MAX / 2);
    }
    let store = Arc::new(store);
    let ids = Arc::new(MessageIds::default());
    let name = |i: usize| format!("user{i}");
    let body: String = "x".repeat(args.body_bytes);

    let send = |k: usize| {
        let (store, ids, body) = (store.clone(), ids.clone(), body.clone());
        let mut rng = rand::rng();
        let from = rng.random_range(0..args.users);
        let mut to = rng.random_range(0..args.users - 1);
        if to >= from {
            to += 1;
        }
        let (from, to) = (name(from), name(to));
        async move {
            let msg = NewMessage {
                id: ids.next(),
                conv: dm_conv(&from, &to),
                from,
                to,
                group: None,
                kind: Kind::Text,
                body,
                media: None,
                ts: now_ms(),
                system: None,
            };
            store
                .send(msg, &format!("c{k}"), args.routes)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    // Scripts loaded and connections up before anything is measured.
    send(usize::MAX).await?;
    let (cpu0, user0, mem0) = redis_usage(&mut conn).await?;
    let started = Instant::now();
    let mut results = futures_util::stream::iter(0..args.sends)
        .map(send)
        .buffer_unordered(args.concurrency.max(1));
    while let Some(r) = results.next().await {
        r?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu1, user1, mem1) = redis_usage(&mut conn).await?;
    let sends = args.sends as f64;

    let by_kind = breakdown(&mut conn, args.sends).await?;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(RedisSendReport {
        label: args.label.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        redis_version,
        users: args.users,
        sends: args.sends,
        archive_feed: args.archive_feed,
        routes: args.routes,
        seconds,
        sends_per_s: sends / seconds,
        redis_cpu_us_per_send: (cpu1 - cpu0) * 1e6 / sends,
        redis_user_cpu_us_per_send: (user1 - user0) * 1e6 / sends,
        used_memory_bytes_per_send: (mem1 - mem0) / sends,
        by_kind,
    })
}

/// The kind of a key: what follows `chat:<cluster>:` up to the next `:`.
fn kind_of(key: &str) -> String {
    let rest = key
        .strip_prefix("chat:")
        .and_then(|k| k.strip_prefix(CLUSTER))
        .and_then(|k| k.strip_prefix(':'))
        .unwrap_or(key);
    rest.split(':').next().unwrap_or(rest).to_owned()
}

/// Memory by key kind: every key counted, `MEMORY USAGE` (all samples of
/// nested values) of up to 2,000 keys of each kind.
async fn breakdown(
    conn: &mut redis::aio::MultiplexedConnection,
    sends: usize,
) -> Result<BTreeMap<String, KeyKind>, String> {
    let mut counts: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    {
        let mut iter: redis::AsyncIter<String> = conn
            .scan_match(format!("chat:{CLUSTER}:*"))
            .await
            .map_err(|e| e.to_string())?;
        while let Some(key) = iter.next_item().await {
            let key = key.map_err(|e| e.to_string())?;
            let entry = counts.entry(kind_of(&key)).or_default();
            entry.0 += 1;
            if entry.1.len() < 2000 {
                entry.1.push(key);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (kind, (keys, sample)) in counts {
        let mut total = 0u64;
        for key in &sample {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(conn)
                .await
                .map_err(|e| e.to_string())?;
            total += bytes.unwrap_or(0);
        }
        let per_key = total as f64 / sample.len().max(1) as f64;
        out.insert(
            kind,
            KeyKind {
                keys,
                bytes_per_key: per_key,
                bytes_per_send: per_key * keys as f64 / sends as f64,
            },
        );
    }
    Ok(out)
}
