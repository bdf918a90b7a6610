//! Presence clean-up against a real Redis (`CHAT_TEST_REDIS_URL`, default
//! 127.0.0.1:6379): a big node user set is walked a page at a time and
//! cleared exactly, entry by entry.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::AsyncCommands;

use super::*;

fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A registry on a cluster id of its own; its keys are deleted on drop.
struct Scratch {
    registry: Registry,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let cluster = format!("t-{tag}-{}-{nanos}", std::process::id());
        let conn = connect(&redis_url(), Duration::from_secs(5)).expect("Redis URL");
        Scratch {
            registry: Registry::new(conn, &cluster),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let prefix = format!("{}*", self.registry.keys().prefix());
        if let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut conn) = client.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&prefix)
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}

const PORT: u16 = 8750;
const OTHER_PORT: u16 = 8760;

/// Users of the node on `PORT`: `gone` with entries of run `x`, `live`
/// with entries of run `y`, `bare` in the node's set with no entry; every
/// user also has an entry of another node, which nothing here may touch.
async fn populate(
    r: &Registry,
    gone: usize,
    live: usize,
    bare: usize,
) -> (Vec<String>, Vec<String>) {
    let k = r.keys();
    let mut conn = r.conn();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut pipe = redis::pipe();
    for i in 0..gone + live + bare {
        let user = format!("u{i}");
        pipe.sadd(k.node_users(PORT), &user).ignore();
        pipe.hset(k.presence(&user), OTHER_PORT, "other").ignore();
        if i < gone {
            pipe.hset(k.presence(&user), PORT, "x").ignore();
            xs.push(user);
        } else if i < gone + live {
            pipe.hset(k.presence(&user), PORT, "y").ignore();
            ys.push(user);
        }
        if i % 2000 == 1999 {
            let _: () = pipe.query_async(&mut conn).await.expect("populate");
            pipe = redis::pipe();
        }
    }
    let _: () = pipe.query_async(&mut conn).await.expect("populate");
    let _: () = conn
        .hset(k.node(PORT), "instance", "y")
        .await
        .expect("details");
    (xs, ys)
}

async fn owner(r: &Registry, user: &str, port: u16) -> Option<String> {
    r.conn()
        .hget(r.keys().presence(user), port)
        .await
        .expect("hget")
}

/// How far one page may go past `batch`: SSCAN's COUNT is a hint, and
/// Redis finishes the hash bucket it is in.
fn page_bound(batch: u32) -> u64 {
    u64::from(batch) + u64::from(batch) / 4
}

#[tokio::test]
async fn a_big_node_user_set_is_cleared_a_page_at_a_time_and_exactly() {
    let s = Scratch::new("pages");
    let r = &s.registry;
    let (xs, ys) = populate(r, 20_000, 1_000, 500).await;
    let batch = 100;

    let (runs, pages) = r.node_runs_paged(PORT, batch).await.expect("node runs");
    assert_eq!(runs, BTreeSet::from(["x".to_owned(), "y".to_owned()]));
    assert!(pages.calls >= 21_500 / page_bound(batch), "{pages:?}");
    assert!(pages.most_scanned <= page_bound(batch), "{pages:?}");
    assert_eq!(r.node_runs(PORT).await.expect("node runs"), runs);

    // The operator clears run x: exactly its entries go, with the bare
    // members of the set; run y's entries and the other node's stay.
    let (removed, pages) = r
        .clear_presence_paged(PORT, "x", false, batch)
        .await
        .expect("clear");
    assert_eq!(removed, 20_000);
    assert!(pages.calls >= 21_500 / page_bound(batch), "{pages:?}");
    assert!(pages.most_scanned <= page_bound(batch), "{pages:?}");
    let left: BTreeSet<String> = r
        .conn()
        .smembers(r.keys().node_users(PORT))
        .await
        .expect("smembers");
    assert_eq!(left, ys.iter().cloned().collect::<BTreeSet<_>>());
    for u in xs.iter().step_by(97) {
        assert_eq!(owner(r, u, PORT).await, None, "{u}");
        assert_eq!(
            owner(r, u, OTHER_PORT).await.as_deref(),
            Some("other"),
            "{u}"
        );
    }
    for u in &ys {
        assert_eq!(owner(r, u, PORT).await.as_deref(), Some("y"), "{u}");
    }
    // Clearing run x again finds nothing of it.
    assert_eq!(r.clear_presence(PORT, "x", false).await.expect("clear"), 0);

    // A new run z starting on the port clears every entry not its own.
    assert_eq!(
        r.clear_presence(PORT, "z", true).await.expect("clear"),
        1_000
    );
    let exists: bool = r
        .conn()
        .exists(r.keys().node_users(PORT))
        .await
        .expect("exists");
    assert!(!exists, "the node's user set is empty");
    for u in ys.iter().chain(&xs).step_by(89) {
        assert_eq!(owner(r, u, PORT).await, None, "{u}");
        assert_eq!(
            owner(r, u, OTHER_PORT).await.as_deref(),
            Some("other"),
            "{u}"
        );
    }
}

#[tokio::test]
async fn keep_mode_spares_only_the_named_run() {
    let s = Scratch::new("keep");
    let r = &s.registry;
    let (xs, ys) = populate(r, 3_000, 700, 50).await;
    let (removed, pages) = r
        .clear_presence_paged(PORT, "y", true, 64)
        .await
        .expect("clear");
    assert_eq!(removed, 3_050, "run x's entries and the bare members");
    assert!(
        pages.calls > 1 && pages.most_scanned <= page_bound(64),
        "{pages:?}"
    );
    for u in &ys {
        assert_eq!(owner(r, u, PORT).await.as_deref(), Some("y"), "{u}");
    }
    for u in xs.iter().step_by(31) {
        assert_eq!(owner(r, u, PORT).await, None, "{u}");
    }
    assert_eq!(
        r.node_runs(PORT).await.expect("node runs"),
        BTreeSet::from(["y".to_owned()])
    );
}
