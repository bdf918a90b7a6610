//! PROTOCOL.md 1.1 with the SQL archive: recall takes the content out of
//! the archived row too (on every engine, through the archiver's
//! re-feed), and group messages read back from SQL as they were stored
//! (history, sync, the conversation list of a removed member).

mod common;

use std::time::Duration;

use chat_node::archive::Archive;
use common::sql_server::{SqlKind, drop_database, fresh_database};
use common::*;
use serde_json::{Value, json};

/// One archive database of a test's own, removed afterwards.
struct TestDb {
    url: String,
    drop: Option<(SqlKind, String)>,
    file: Option<std::path::PathBuf>,
}

impl TestDb {
    fn new(kind: Option<SqlKind>) -> TestDb {
        let name = format!("t_{:012x}", rand::random::<u64>() >> 16);
        match kind {
            None => {
                let file = std::env::temp_dir().join(format!("parley-{name}.db"));
                TestDb {
                    url: format!("sqlite://{}", file.display()),
                    drop: None,
                    file: Some(file),
                }
            }
            Some(kind) => TestDb {
                url: fresh_database(kind, &name),
                drop: Some((kind, name)),
                file: None,
            },
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

/// A message as the archive holds it, once it is there.
async fn archived(archive: &Archive, id: &str) -> Option<chat_node::protocol::Message> {
    archive.by_ids(&[id]).await.ok()?.into_iter().next()
}

/// Recall of a message the archive already holds: the row loses its
/// content (Redis feeds it again; the in-memory store writes through).
async fn recall_empties_the_archived_row(backend: Backend, kind: Option<SqlKind>) {
    let db = TestDb::new(kind);
    let url = db.url.clone();
    let node = TestNode::start(backend, |c| {
        c.archive_url = Some(url);
        c.archive_claim_s = 2;
    })
    .await;
    let mut alice = node.session("alice").await;
    let sent = alice
        .request(
            json!({"type":"send","id":"i","to":"bob","kind":"image","body":"",
            "media":{"url":"https://x/secret.jpg","width":4,"height":3}}),
        )
        .await;
    assert_eq!(sent["type"], "sent", "{sent}");
    let id = sent["msg"]["id"].as_str().unwrap().to_owned();
    let kept = alice.send_text("bob", "t", "stays").await["msg"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let archive = db.archive();
    let row = eventually(
        "the image is archived",
        Duration::from_secs(20),
        async || archived(&archive, &id).await,
    )
    .await;
    assert_eq!(row.media.unwrap().url, "https://x/secret.jpg");

    let r = alice.request(json!({"type":"recall","msg":id})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let row = eventually(
        "the archive forgets the image",
        Duration::from_secs(20),
        async || {
            archived(&archive, &id)
                .await
                .filter(|m| m.recalled == Some(true))
        },
    )
    .await;
    assert_eq!((row.body.as_str(), row.media), ("", None));
    // The other message is untouched, and nothing was stored twice.
    let other = archived(&archive, &kept).await.unwrap();
    assert_eq!((other.body.as_str(), other.recalled), ("stays", None));
    assert_eq!(archive.count().await.unwrap(), (2, 2));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_empties_the_archived_row_redis_sqlite() {
    recall_empties_the_archived_row(Backend::Redis, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_empties_the_archived_row_redis_mariadb() {
    recall_empties_the_archived_row(Backend::Redis, Some(SqlKind::MariaDb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_empties_the_archived_row_redis_postgres() {
    recall_empties_the_archived_row(Backend::Redis, Some(SqlKind::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_empties_the_archived_row_memory_sqlite() {
    recall_empties_the_archived_row(Backend::Memory, None).await;
}

/// Group messages that left the hot store read back whole from SQL.
async fn group_messages_read_back_from_the_archive(backend: Backend) {
    let db = TestDb::new(None);
    let url = db.url.clone();
    let node = TestNode::start(backend, |c| {
        c.archive_url = Some(url);
        c.hot_messages = 1;
        c.hot_seconds = 0;
        c.recall_window_s = 0;
        c.archive_claim_s = 2;
    })
    .await;
    let mut alice = node.session("alice").await;
    let r = alice
        .request(json!({"type":"group_create","name":"Team","members":["bob","carol"]}))
        .await;
    let gid = r["group"]["id"].as_str().unwrap().to_owned();
    let r = alice
        .request(json!({"type":"group_remove","group":gid,"users":["carol"]}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    for i in 0..4 {
        let r = alice
            .request(json!({"type":"send","id":format!("g{i}"),"group":gid,"kind":"text","body":format!("m{i}")}))
            .await;
        assert_eq!(r["type"], "sent", "{r}");
    }
    let archive = db.archive();
    let conv = format!("g:{gid}");
    let cluster = node.cluster.clone();
    eventually(
        "archived and out of the hot store",
        Duration::from_secs(20),
        async || {
            let (rows, _) = archive.count().await.ok()?;
            if rows != 6 {
                return None;
            }
            if backend == Backend::Memory {
                return Some(());
            }
            let mut r = redis::Client::open(redis_url())
                .ok()?
                .get_connection()
                .ok()?;
            let held: u64 = redis::cmd("LLEN")
                .arg(format!("chat:{cluster}:conv:{conv}"))
                .query(&mut r)
                .ok()?;
            (held == 1).then_some(())
        },
    )
    .await;

    // History spans SQL: the system messages keep their events.
    let r = alice
        .request(json!({"type":"history","group":gid,"limit":10}))
        .await;
    let msgs = r["messages"].as_array().unwrap();
    let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "{r}");
    assert_eq!(msgs[0]["system"]["event"], "created");
    assert_eq!(
        msgs[1]["system"],
        json!({"event":"removed","by":"alice","users":["carol"]})
    );
    for m in msgs {
        assert_eq!(m["group"], gid.as_str(), "{m}");
        assert!(m.get("to").is_none(), "{m}");
    }
    assert_eq!(msgs[5]["body"], "m3");
    // Sync of messages only SQL holds.
    let mut bob = node.session("bob").await;
    let entries = bob.sync_all(0).await;
    let got: Vec<&Value> = entries.iter().map(|e| &e["msg"]).collect();
    assert_eq!(got, msgs.iter().collect::<Vec<_>>());
    // carol's list ends at her removal, read from SQL.
    let mut carol = node.session("carol").await;
    let r = carol.request(json!({"type":"conversations"})).await;
    assert_eq!(r["items"][0]["last"], msgs[1], "{r}");
    assert_eq!(r["items"][0]["group"]["name"], "Team");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_read_back_from_the_archive_redis() {
    group_messages_read_back_from_the_archive(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_read_back_from_the_archive_memory() {
    group_messages_read_back_from_the_archive(Backend::Memory).await;
}

/// A recall window longer than the hot window: a message that left the
/// hot store is recalled in SQL, and the inboxes still get the event.
async fn recall_reaches_messages_past_the_hot_window(backend: Backend) {
    let db = TestDb::new(None);
    let url = db.url.clone();
    let node = TestNode::start(backend, |c| {
        c.archive_url = Some(url);
        c.hot_messages = 1;
        c.hot_seconds = 0;
        c.archive_claim_s = 2;
    })
    .await;
    let mut alice = node.session("alice").await;
    let first = alice.send_text("bob", "1", "old secret").await["msg"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.send_text("bob", "2", "newer").await;
    let cluster = node.cluster.clone();
    let archive = db.archive();
    eventually(
        "the first message left the hot store",
        Duration::from_secs(20),
        async || {
            archived(&archive, &first).await?;
            if backend == Backend::Memory {
                return Some(());
            }
            let mut r = redis::Client::open(redis_url())
                .ok()?
                .get_connection()
                .ok()?;
            let exists: bool = redis::cmd("EXISTS")
                .arg(format!("chat:{cluster}:msg:{first}"))
                .query(&mut r)
                .ok()?;
            (!exists).then_some(())
        },
    )
    .await;
    let r = alice.request(json!({"type":"recall","msg":first})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let row = archived(&archive, &first).await.unwrap();
    assert_eq!((row.body.as_str(), row.recalled), ("", Some(true)));
    let r = alice.request(json!({"type":"recall","msg":first})).await;
    assert_eq!(r["code"], "bad_request", "twice: {r}");
    let mut bob = node.session("bob").await;
    let entries = bob.sync_all(0).await;
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["msg"]["recalled"], true, "{entries:?}");
    assert_eq!(entries[2]["event"]["msg"], first.as_str());
    let r = bob.request(json!({"type":"history","with":"alice"})).await;
    assert_eq!(r["messages"][0]["body"], "", "{r}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_reaches_messages_past_the_hot_window_redis() {
    recall_reaches_messages_past_the_hot_window(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_reaches_messages_past_the_hot_window_memory() {
    recall_reaches_messages_past_the_hot_window(Backend::Memory).await;
}

/// A group event of over 64 KiB (1,100 members with long ids: `created`
/// lists them all) is archived whole on every engine (MySQL's TEXT would
/// refuse it, and its archiver retry the batch for ever).
async fn a_large_group_event_is_archived_whole(kind: Option<SqlKind>) {
    let db = TestDb::new(kind);
    let url = db.url.clone();
    let node = TestNode::start(Backend::Redis, |c| {
        c.archive_url = Some(url);
        c.max_group_members = 1200;
        c.max_frame_bytes = 256 * 1024;
    })
    .await;
    let members: Vec<String> = (0..1100)
        .map(|i| format!("member-{i:04}-{}", "x".repeat(50)))
        .collect();
    let mut alice = node.session("alice").await;
    let r = alice
        .request(json!({"type":"group_create","name":"Big","members":members}))
        .await;
    assert_eq!(r["type"], "group", "{r}");
    let created = alice.sync_all(0).await;
    let id = created[0]["msg"]["id"].as_str().unwrap().to_owned();
    let archive = db.archive();
    let row = eventually(
        "the created event is archived",
        Duration::from_secs(20),
        async || archived(&archive, &id).await,
    )
    .await;
    let event = row.system.expect("a system event");
    assert_eq!((event.event.as_str(), event.users), ("created", members));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_event_is_archived_whole_mariadb() {
    a_large_group_event_is_archived_whole(Some(SqlKind::MariaDb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_event_is_archived_whole_postgres() {
    a_large_group_event_is_archived_whole(Some(SqlKind::Postgres)).await;
}
