//! The SQL archive (DESIGN.md, "Storage tiers"), against real MariaDB,
//! PostgreSQL and SQLite: reads span Redis and SQL with no gap or repeat,
//! Redis keeps only the hot window, a lagging archive refuses sends instead
//! of filling Redis, the in-memory store keeps history across a restart, and
//! killed nodes and a restarted SQL server lose and duplicate nothing, and
//! a migration a dead migrator left half done runs again.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_node::archive::Archive;
use common::cluster::{Cluster, amqp_url, free_port};
use common::sql_server::{PrivateMariaDb, PrivatePostgres, SqlKind, drop_database, fresh_database};
use common::*;
use serde_json::{Value, json};

/// One archive database of a test's own, removed afterwards.
struct TestDb {
    url: String,
    drop: Option<(SqlKind, String)>,
    file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy)]
enum Engine {
    Sqlite,
    MariaDb,
    Postgres,
}

impl TestDb {
    fn new(engine: Engine) -> TestDb {
        let name = format!("t_{:012x}", rand::random::<u64>() >> 16);
        match engine {
            Engine::Sqlite => {
                let file = std::env::temp_dir().join(format!("parley-{name}.db"));
                TestDb {
                    url: format!("sqlite://{}", file.display()),
                    drop: None,
                    file: Some(file),
                }
            }
            Engine::MariaDb | Engine::Postgres => {
                let kind = match engine {
                    Engine::MariaDb => SqlKind::MariaDb,
                    _ => SqlKind::Postgres,
                };
                TestDb {
                    url: fresh_database(kind, &name),
                    drop: Some((kind, name)),
                    file: None,
                }
            }
        }
    }

    fn archive(&self) -> Archive {
        Archive::connect_lazy(&self.url, Duration::from_secs(5)).expect("archive URL")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((kind, name)) = &self.drop {
            drop_database(*kind, name);
        }
        if let Some(f) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
    }
}

fn redis() -> redis::Connection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

/// Walks `history` with `bob` from the newest message down, `limit` at a
/// time; returns the seqs in ascending order.
async fn all_history(c: &mut Client, limit: u64) -> Vec<Value> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut req = json!({"type": "history", "with": "bob", "limit": limit});
        if let Some(b) = before {
            req["before"] = json!(b);
        }
        let r = c.request(req).await;
        assert_eq!(r["type"], "history", "{r}");
        let msgs = r["messages"].as_array().unwrap().clone();
        assert!(msgs.len() as u64 <= limit);
        before = msgs.first().map(|m| m["seq"].as_u64().unwrap());
        let more = r["more"] == true;
        pages.push(msgs);
        if !more {
            break;
        }
    }
    pages.into_iter().rev().flatten().collect()
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// Everything reads the same once messages have left Redis: history pages
/// across the boundary, sync of entries whose message is only in SQL,
/// `played` on an archived message, a retried client id, `read`.
async fn reads_span_redis_and_sql(engine: Engine) {
    let db = TestDb::new(engine);
    let url = db.url.clone();
    let node = TestNode::start(Backend::Redis, |c| {
        c.archive_url = Some(url);
        c.hot_messages = 5;
        c.hot_seconds = 0;
        c.archive_claim_s = 2;
    })
    .await;
    let mut alice = node.session("alice").await;
    let voice = alice
        .request(
            json!({"type": "send", "id": "v-1", "to": "bob", "kind": "voice", "body": "",
            "media": {"url": "https://x/v.ogg", "duration_s": 3}}),
        )
        .await;
    assert_eq!(voice["type"], "sent", "{voice}");
    let voice_id = voice["msg"]["id"].as_str().unwrap().to_owned();
    let mut ids = vec![voice_id.clone()];
    for i in 0..30 {
        let r = alice
            .send_text("bob", &format!("c-{i}"), &format!("m{i}"))
            .await;
        ids.push(r["msg"]["id"].as_str().unwrap().to_owned());
    }
    let archive = db.archive();
    let conv_key = format!("chat:{}:conv:dm:alice:bob", node.cluster);
    eventually(
        "all archived, Redis down to the hot window",
        Duration::from_secs(20),
        async || {
            let (rows, distinct) = archive.count().await.ok()?;
            let held: u64 = redis::cmd("LLEN").arg(&conv_key).query(&mut redis()).ok()?;
            (rows == 31 && distinct == 31 && held == 5).then_some(())
        },
    )
    .await;
    let archived = archive.all_ids().await.unwrap();
    assert_eq!(
        archived,
        ids.iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let feed: u64 = redis::cmd("XLEN")
        .arg(format!("chat:{}:archive", node.cluster))
        .query(&mut redis())
        .unwrap();
    assert_eq!(feed, 0, "every feed entry acknowledged and deleted");
    // The voice message left Redis entirely.
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("chat:{}:msg:{voice_id}", node.cluster))
        .query(&mut redis())
        .unwrap();
    assert!(!exists);

    // History, at several page sizes: 1..=31 in order, each once.
    for limit in [1, 4, 5, 7, 50] {
        let msgs = all_history(&mut alice, limit).await;
        assert_eq!(seqs(&msgs), (1..=31).collect::<Vec<_>>(), "limit {limit}");
        let got: Vec<&str> = msgs.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // A page that starts in SQL and ends in Redis.
    let r = alice
        .request(json!({"type": "history", "with": "bob", "before": 30, "limit": 6}))
        .await;
    assert_eq!(
        seqs(r["messages"].as_array().unwrap()),
        (24..30).collect::<Vec<_>>()
    );
    assert_eq!(r["more"], true);

    // Sync of messages that are only in SQL.
    let mut bob = node.session("bob").await;
    let entries = bob.sync_all(0).await;
    let pts: Vec<u64> = entries.iter().map(|e| e["pts"].as_u64().unwrap()).collect();
    assert_eq!(pts, (1..=31).collect::<Vec<_>>());
    assert_eq!(entries[0]["msg"]["id"], voice_id.as_str());
    assert_eq!(entries[0]["msg"]["played"], false);

    // played on a message that left Redis is written to SQL.
    let r = bob
        .request(json!({"type": "played", "msg": voice_id}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let event = alice.recv().await;
    assert_eq!(
        (event["type"].as_str(), event["by"].as_str()),
        (Some("played"), Some("bob"))
    );
    let r = bob
        .request(json!({"type": "history", "with": "alice", "before": 2, "limit": 1}))
        .await;
    assert_eq!(r["messages"][0]["played"], true, "{r}");
    // Only its receiver may.
    let r = alice
        .request(json!({"type": "played", "msg": voice_id}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");

    // A retried client id whose message left Redis gets the first message.
    let r = alice
        .request(json!({"type": "send", "id": "c-0", "to": "bob", "kind": "text", "body": "again"}))
        .await;
    assert_eq!(r["type"], "sent", "{r}");
    assert_eq!(r["msg"]["id"], ids[1].as_str());
    assert_eq!(r["msg"]["seq"], 2);
    // ...and is delivered to nobody again.
    bob.expect_silence(Duration::from_millis(300)).await;
    // read follows the conversation's counter, not what Redis holds.
    let r = bob
        .request(json!({"type": "read", "with": "alice", "seq": 31}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let r = bob
        .request(json!({"type": "read", "with": "alice", "seq": 32}))
        .await;
    assert_eq!(r["type"], "error", "{r}");
    // Nothing was stored twice.
    assert_eq!(archive.count().await.unwrap(), (31, 31));
    node.stop().await;
}

/// A node whose archive cannot be reached keeps serving and stays ready,
/// shows the lag, and refuses sends past the most lag allowed.
#[tokio::test]
async fn a_lagging_archive_refuses_sends_instead_of_filling_redis() {
    let dead = free_port();
    let node = TestNode::start(Backend::Redis, |c| {
        c.archive_url = Some(format!("postgres://parley:parley@127.0.0.1:{dead}/none"));
        c.archive_max_lag = 5;
    })
    .await;
    let mut alice = node.session("alice").await;
    for i in 0..5 {
        alice.send_text("bob", &format!("c-{i}"), "hi").await;
    }
    let r = alice
        .request(json!({"type": "send", "id": "c-5", "to": "bob", "kind": "text", "body": "hi"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{r}"
    );
    assert_eq!(node.get("/readyz").await.0, 200);
    eventually("lag in /metrics", Duration::from_secs(10), async || {
        let (_, text) = node.get("/metrics").await;
        (metric_value(&text, "chat_archive_lag_entries") == Some(5.0)).then_some(())
    })
    .await;
    // History still reads what Redis holds.
    let r = alice
        .request(json!({"type": "history", "with": "bob"}))
        .await;
    assert_eq!(r["messages"].as_array().unwrap().len(), 5, "{r}");
    node.stop().await;
}

/// A message SQL refuses for its data (a NUL in its body, which
/// PostgreSQL's text cannot hold, as an older build let through) holds up
/// only itself: the messages after it are archived, it stays in Redis with
/// its feed entry pending, and `/metrics` counts it.
#[tokio::test]
async fn a_message_sql_refuses_holds_up_only_itself() {
    let db = TestDb::new(Engine::Postgres);
    let url = db.url.clone();
    let node = TestNode::start(Backend::Redis, |c| {
        c.archive_url = Some(url);
        c.archive_claim_s = 2;
    })
    .await;
    // The refused message, written first, as a send script does.
    let keys = parley_cluster::Keys::new(&node.cluster);
    let bad = "01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let mut r = redis();
    let _: () = redis::cmd("HSET")
        .arg(keys.msg(bad))
        .arg(&[
            ("id", bad),
            ("conv", "dm:alice:mallory"),
            ("seq", "1"),
            ("from", "mallory"),
            ("to", "alice"),
            ("kind", "text"),
            ("body", "a\0b"),
            ("ts", "1763856000123"),
        ])
        .query(&mut r)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(keys.archive_stream())
        .arg("*")
        .arg(&[("i", bad), ("c", "dm:alice:mallory"), ("s", "1")])
        .query(&mut r)
        .unwrap();
    let mut alice = node.session("alice").await;
    let mut good = Vec::new();
    for i in 0..3 {
        let sent = alice.send_text("bob", &format!("c-{i}"), "fine").await;
        good.push(sent["msg"]["id"].as_str().unwrap().to_owned());
    }
    let archive = db.archive();
    eventually(
        "the messages after it are archived",
        Duration::from_secs(20),
        async || (archive.count().await.ok()? == (3, 3)).then_some(()),
    )
    .await;
    let mut ids = archive.all_ids().await.unwrap();
    ids.sort();
    good.sort();
    assert_eq!(ids, good);
    eventually(
        "the refusal is counted",
        Duration::from_secs(10),
        async || {
            let (_, text) = node.get("/metrics").await;
            (metric_value(&text, "chat_archive_rejected_total")? >= 1.0).then_some(())
        },
    )
    .await;
    // It is still in Redis, its entry still in the feed (the lag), and the
    // archiver tries it again after the claim timeout, counted again.
    let exists: bool = redis::cmd("EXISTS")
        .arg(keys.msg(bad))
        .query(&mut r)
        .unwrap();
    assert!(exists);
    let lag: u64 = redis::cmd("XLEN")
        .arg(keys.archive_stream())
        .query(&mut r)
        .unwrap();
    assert_eq!(lag, 1);
    eventually("tried again", Duration::from_secs(20), async || {
        let (_, text) = node.get("/metrics").await;
        (metric_value(&text, "chat_archive_rejected_total")? >= 2.0).then_some(())
    })
    .await;
    assert_eq!(archive.count().await.unwrap(), (3, 3));
    node.stop().await;
}

/// On MariaDB a migration's DDL commits by itself, so a migrator killed
/// after it (a node stopped mid-start, the server dying under it) leaves
/// the migration recorded `success = FALSE`, which sqlx then refuses for
/// ever ("partially applied"). The next node runs such a migration again,
/// every one of them, keeping the rows already archived; nodes starting
/// together take turns.
#[tokio::test]
async fn a_migration_left_half_done_runs_again() {
    use common::sql_server::query;
    let db = TestDb::new(Engine::MariaDb);
    let first: chat_node::protocol::Message = serde_json::from_value(json!({
        "id": "01JKM0000000000000000000AA", "conv": "d:a:b", "seq": 1,
        "from": "a", "to": "b", "kind": "text", "body": "kept", "ts": 1,
    }))
    .unwrap();
    // Nodes starting together on an empty database take turns.
    let starting: Vec<Archive> = (0..4).map(|_| db.archive()).collect();
    for r in futures_util::future::join_all(starting.iter().map(|a| a.ready())).await {
        r.expect("migrations run by nodes starting together");
    }
    db.archive()
        .insert(std::slice::from_ref(&first))
        .await
        .unwrap();
    let versions = query(
        &db.url,
        "SELECT version FROM _sqlx_migrations ORDER BY version",
    );
    let versions: Vec<&str> = versions.lines().collect();
    assert!(versions.len() >= 2, "migrations applied: {versions:?}");
    let sys_event_type = || {
        query(
            &db.url,
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = 'chat_message' AND COLUMN_NAME = 'sys_event'",
        )
    };
    assert_eq!(sys_event_type().trim(), "mediumtext");
    for v in &versions {
        query(
            &db.url,
            &format!("UPDATE _sqlx_migrations SET success = FALSE WHERE version = {v}"),
        );
        if *v == "2" {
            // Its DDL rolled back, as a server that crashed mid-ALTER leaves it.
            query(
                &db.url,
                "ALTER TABLE chat_message MODIFY sys_event TEXT NULL",
            );
        }
        let archive = db.archive();
        archive
            .ready()
            .await
            .unwrap_or_else(|e| panic!("migration {v} left half done: {e}"));
        let left = query(
            &db.url,
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE success = FALSE",
        );
        assert_eq!(left.trim(), "0", "after re-running migration {v}");
        let applied = query(
            &db.url,
            "SELECT version FROM _sqlx_migrations ORDER BY version",
        );
        assert_eq!(applied.lines().collect::<Vec<_>>(), versions);
        assert_eq!(
            sys_event_type().trim(),
            "mediumtext",
            "after re-running migration {v}"
        );
        assert_eq!(
            archive.range("d:a:b", 1, 2).await.unwrap(),
            vec![first.clone()]
        );
    }
}

/// MySQL user locks are named per server: nodes on one database take turns
/// migrating, but a node archiving to another database of the same server
/// waits for none of them.
#[tokio::test]
async fn migrations_wait_only_for_nodes_of_the_same_database() {
    use chat_node::archive::MYSQL_MIGRATION_LOCK;
    use sqlx::{AssertSqlSafe, Connection};
    let (a, b) = (TestDb::new(Engine::MariaDb), TestDb::new(Engine::MariaDb));
    // A node on database a is migrating: it holds a's lock.
    let mut migrating = sqlx::MySqlConnection::connect(&a.url)
        .await
        .expect("connection to database a");
    let (taken,): (Option<i64>,) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT GET_LOCK({MYSQL_MIGRATION_LOCK}, 5)"
    )))
    .fetch_one(&mut migrating)
    .await
    .unwrap();
    assert_eq!(taken, Some(1));
    within(
        "migrations on database b while a is migrating",
        Duration::from_secs(20),
        b.archive().ready(),
    )
    .await
    .expect("database b migrated");
    // Another node on a waits its turn (its archive is down meanwhile).
    let waiting = a.archive();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), waiting.ready())
            .await
            .is_err(),
        "a node on database a migrated while another held the lock"
    );
    migrating.close().await.unwrap();
    within(
        "migrations on database a once its lock is free",
        Duration::from_secs(20),
        waiting.ready(),
    )
    .await
    .expect("database a migrated");
}

/// The in-memory store with `sqlite://` keeps history across a restart,
/// and numbering goes on where it stopped.
#[tokio::test]
async fn memory_store_with_sqlite_keeps_history_across_a_restart() {
    let db = TestDb::new(Engine::Sqlite);
    let start = || {
        let url = db.url.clone();
        TestNode::start(Backend::Memory, move |c| {
            c.archive_url = Some(url);
            c.hot_messages = 3;
            c.hot_seconds = 0;
        })
    };
    let node = start().await;
    let mut alice = node.session("alice").await;
    for i in 0..10 {
        alice
            .send_text("bob", &format!("c-{i}"), &format!("m{i}"))
            .await;
    }
    // Beyond the hot window already: read through.
    assert_eq!(
        seqs(&all_history(&mut alice, 4).await),
        (1..=10).collect::<Vec<_>>()
    );
    let mut bob = node.session("bob").await;
    assert_eq!(bob.sync_all(0).await.len(), 10);
    drop((alice, bob));
    node.stop().await;

    let node = start().await;
    let mut alice = node.session("alice").await;
    let msgs = all_history(&mut alice, 4).await;
    assert_eq!(seqs(&msgs), (1..=10).collect::<Vec<_>>());
    assert_eq!(msgs[9]["body"], "m9");
    let r = alice.send_text("bob", "c-after", "after").await;
    assert_eq!(r["msg"]["seq"], 11);
    assert_eq!(db.archive().count().await.unwrap(), (11, 11));
    node.stop().await;
}

/// `sync` from before what retention kept says where the inbox starts now.
async fn sync_answers_trimmed_to(backend: Backend) {
    let node = TestNode::start(backend, |c| {
        c.inbox_retention_entries = 3;
        c.inbox_retention_days = 0;
    })
    .await;
    let mut alice = node.session("alice").await;
    for i in 0..10 {
        alice.send_text("bob", &format!("c-{i}"), "x").await;
    }
    // Retention drops entries older than the newest (0 days) beyond the
    // newest 3, when the next entry is appended.
    tokio::time::sleep(Duration::from_millis(5)).await;
    alice.send_text("bob", "c-last", "x").await;
    let r = alice.request(json!({"type": "sync", "after": 0})).await;
    assert_eq!(r["trimmed_to"], 9, "{r}");
    assert_eq!(r["entries"].as_array().unwrap().len(), 3);
    let r = alice.request(json!({"type": "sync", "after": 8})).await;
    assert!(r.get("trimmed_to").is_none(), "{r}");
    node.stop().await;
}

#[tokio::test]
async fn sync_answers_trimmed_to_redis() {
    sync_answers_trimmed_to(Backend::Redis).await;
}

#[tokio::test]
async fn sync_answers_trimmed_to_memory() {
    sync_answers_trimmed_to(Backend::Memory).await;
}

/// Keeps sending from `user` on node `i` until `stop`, recording every id
/// the node acknowledged; ends quietly when the node goes away.
async fn sender(
    cluster: &Cluster,
    i: usize,
    user: &'static str,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let addr = cluster.addr(i);
    let token = cluster.token(i, user).await;
    tokio::spawn(async move {
        let Some(c) = Client::try_connect(addr, &token).await else {
            return;
        };
        let mut c = c.expect_connected();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let frame = json!({"type": "send", "id": format!("{user}-{n}"), "to": "peer",
                "kind": "text", "body": format!("{user} {n}")});
            let Some(r) = c.try_request(frame).await else {
                return;
            };
            if r["type"] == "sent" {
                acked
                    .lock()
                    .unwrap()
                    .push(r["msg"]["id"].as_str().unwrap().to_owned());
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

/// Two nodes archive while traffic goes on; the SQL server is killed, one
/// node is killed with SIGKILL while its archiver holds a batch SQL
/// refused, SQL comes back, the node restarts: every acknowledged message
/// ends in SQL exactly once (compared by id), and the feed empties.
async fn nothing_acknowledged_is_lost_or_doubled(engine: Engine) {
    let dir = std::env::temp_dir().join(format!("parley-sql-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    enum Server {
        Pg(PrivatePostgres),
        My(PrivateMariaDb),
        Lite(TestDb),
    }
    let mut server = match engine {
        Engine::Postgres => Server::Pg(PrivatePostgres::start(free_port(), &dir.join("pg"))),
        Engine::MariaDb => Server::My(PrivateMariaDb::start(free_port(), &dir.join("my"))),
        Engine::Sqlite => Server::Lite(TestDb::new(Engine::Sqlite)),
    };
    let url = match &server {
        Server::Pg(s) => s.url(),
        Server::My(s) => s.url(),
        Server::Lite(d) => d.url.clone(),
    };
    let env_url = url.clone();
    let mut cluster = Cluster::start_with_env(2, &amqp_url(), move |_| {
        vec![
            ("CHAT_ARCHIVE_URL", env_url.clone()),
            ("CHAT_HOT_MESSAGES", "3".to_owned()),
            ("CHAT_HOT_SECONDS", "0".to_owned()),
            ("CHAT_ARCHIVE_CLAIM_S", "2".to_owned()),
            ("CHAT_ARCHIVE_BATCH", "16".to_owned()),
            // The senders go as fast as the node answers.
            ("CHAT_RATE_PER_S", "100000".to_owned()),
            ("CHAT_RATE_BURST", "100000".to_owned()),
        ]
    })
    .await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, user) in [(0, "a0"), (0, "a1"), (1, "b0"), (1, "b1")] {
        tasks.push(sender(&cluster, i, user, acked.clone(), stop.clone()).await);
    }
    let count = |n: usize| {
        let acked = acked.clone();
        async move {
            eventually(
                format!("{n} acknowledged"),
                Duration::from_secs(60),
                async || (acked.lock().unwrap().len() >= n).then_some(()),
            )
            .await
        }
    };
    count(100).await;
    // SQL goes away while both nodes keep storing.
    match &mut server {
        Server::Pg(s) => s.kill(),
        Server::My(s) => s.kill(),
        Server::Lite(_) => {}
    }
    let before = acked.lock().unwrap().len();
    count(before + 100).await;
    if !matches!(server, Server::Lite(_)) {
        eventually(
            "archivers see SQL refuse",
            Duration::from_secs(20),
            async || (cluster.metric(1, "chat_archive_errors_total").await > 0.0).then_some(()),
        )
        .await;
    }
    // Node 0 dies holding the batch SQL refused.
    cluster.kill(0).await;
    let before = acked.lock().unwrap().len();
    count(before + 50).await;
    match &mut server {
        Server::Pg(s) => s.restart(),
        Server::My(s) => s.restart(),
        Server::Lite(_) => {}
    }
    cluster.spawn(0);
    cluster.wait_ready(0).await;
    tasks.push(sender(&cluster, 0, "a2", acked.clone(), stop.clone()).await);
    let before = acked.lock().unwrap().len();
    count(before + 100).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let archive = Archive::connect_lazy(&url, Duration::from_secs(5)).unwrap();
    let feed_key = format!("chat:{}:archive", cluster.cluster);
    let drained = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let feed: Option<u64> = redis::cmd("XLEN").arg(&feed_key).query(&mut redis()).ok();
            if feed == Some(0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if drained.is_err() {
        // Say where the entries are stuck before failing.
        let mut r = redis();
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(&feed_key)
            .arg("archivers")
            .query(&mut r)
            .unwrap_or(redis::Value::Nil);
        let consumers: redis::Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&feed_key)
            .arg("archivers")
            .query(&mut r)
            .unwrap_or(redis::Value::Nil);
        let len: u64 = redis::cmd("XLEN").arg(&feed_key).query(&mut r).unwrap_or(0);
        panic!(
            "the feed did not drain within 90 s: {len} entries left, rows {:?}; pending {pending:?}; consumers {consumers:?}",
            archive.count().await
        );
    }
    let (rows, distinct) = archive.count().await.unwrap();
    assert_eq!(rows, distinct, "a message archived twice");
    let archived: BTreeSet<String> = archive.all_ids().await.unwrap().into_iter().collect();
    let missing: Vec<&String> = acked.difference(&archived).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages missing from SQL: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Stored but not acknowledged (the node died before answering) is
    // allowed, but only a few: the sends in flight when node 0 died.
    assert!(
        archived.len() - acked.len() <= 8,
        "{} unacknowledged rows",
        archived.len() - acked.len()
    );
    drop(cluster);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

macro_rules! per_engine {
    ($($engine:ident),*) => {
        $(
            #[allow(non_snake_case)]
            mod $engine {
                use super::*;

                #[tokio::test]
                async fn reads_span_redis_and_sql() {
                    super::reads_span_redis_and_sql(Engine::$engine).await;
                }

                #[tokio::test]
                async fn nothing_acknowledged_is_lost_or_doubled() {
                    super::nothing_acknowledged_is_lost_or_doubled(Engine::$engine).await;
                }
            }
        )*
    };
}

per_engine!(Sqlite, MariaDb, Postgres);
