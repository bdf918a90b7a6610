//! The store seam's contract, checked on both implementations through the
//! `Store` trait: the rules that are awkward to reach over the wire
//! (expiry, retention, compare-and-delete).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chat_node::ids::{self, now_ms};
use chat_node::protocol::Kind;
use chat_node::store::memory::MemoryStore;
use chat_node::store::redis::RedisStore;
use chat_node::store::{NewMessage, NodeRecord, Retention, Store, TokenRecord};
use common::{Backend, delete_cluster_keys, redis_url, unique_cluster};

/// A store of the given kind in a fresh cluster; Redis keys go on drop.
struct Fixture {
    store: Arc<dyn Store>,
    cluster: String,
    redis: bool,
}

impl Fixture {
    fn new(b: Backend, retention: Retention) -> Fixture {
        let cluster = unique_cluster("store");
        let store: Arc<dyn Store> = match b {
            Backend::Memory => Arc::new(MemoryStore::new(retention)),
            Backend::Redis => Arc::new(
                RedisStore::new(&redis_url(), &cluster, retention, Duration::from_secs(2)).unwrap(),
            ),
        };
        Fixture {
            store,
            cluster,
            redis: b == Backend::Redis,
        }
    }
}

impl Fixture {
    /// Records a token hashed `hash` for `user`, valid for an hour.
    async fn token(&self, hash: &str, user: &str) {
        let record = TokenRecord {
            user: user.to_owned(),
            platform: "web".to_owned(),
            expires_at: now_ms() + 3_600_000,
        };
        self.store.put_token(hash, &record).await.unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.redis {
            delete_cluster_keys(&redis_url(), &self.cluster);
        }
    }
}

const KEEP_ALL: Retention = Retention {
    max_entries: 10_000,
    max_age_ms: 30 * 24 * 3600 * 1000,
};

fn msg(id: &str, from: &str, to: &str, ts: u64) -> NewMessage {
    NewMessage {
        id: id.to_owned(),
        conv: chat_node::protocol::dm_conv(from, to),
        from: from.to_owned(),
        to: to.to_owned(),
        group: None,
        kind: Kind::Text,
        body: id.to_owned(),
        media: None,
        ts,
        system: None,
    }
}

both_stores!(
    expired_tokens_are_refused,
    retention_keeps_the_newest_entries_or_the_young_ones,
    pages_follow_seq_and_pts_after_trimming_and_at_any_bound,
    deregistering_spares_a_node_that_came_back,
    send_reads_the_routes_of_both_users,
    join_refuses_a_token_revoked_since_it_was_checked,
);

async fn join_refuses_a_token_revoked_since_it_was_checked(b: Backend) {
    let f = Fixture::new(b, KEEP_ALL);
    f.token("t1", "alice").await;
    assert_eq!(
        f.store.join("alice", 8750, "i0", "t1").await.unwrap(),
        Some(0)
    );
    assert_eq!(f.store.presence(&["alice"]).await.unwrap()[0].len(), 1);
    f.store.leave("alice", 8750, "i0").await.unwrap();
    // Revoked between the node's token check and the join: refused, and
    // no presence is left that would route anything here.
    f.store.delete_token("t1").await.unwrap();
    assert_eq!(f.store.join("alice", 8750, "i0", "t1").await.unwrap(), None);
    assert!(f.store.presence(&["alice"]).await.unwrap()[0].is_empty());
    // A token that never existed, likewise.
    assert_eq!(
        f.store.join("alice", 8750, "i0", "nope").await.unwrap(),
        None
    );
}

async fn send_reads_the_routes_of_both_users(b: Backend) {
    let f = Fixture::new(b, KEEP_ALL);
    let now = now_ms();
    f.token("ta", "alice").await;
    f.token("tb", "bob").await;
    f.store.join("alice", 8750, "i0", "ta").await.unwrap();
    f.store.join("bob", 8770, "i2", "tb").await.unwrap();
    f.store.join("bob", 8760, "i1", "tb").await.unwrap();
    let stored = f
        .store
        .send(msg("m1", "alice", "bob", now), "c1", true)
        .await
        .unwrap();
    assert_eq!(
        stored.routes,
        Some(vec![
            ("alice".to_owned(), vec![(8750, "i0".to_owned())]),
            (
                "bob".to_owned(),
                vec![(8760, "i1".to_owned()), (8770, "i2".to_owned())]
            ),
        ])
    );
    // A user without sessions has no nodes; a note to oneself names one user.
    let stored = f
        .store
        .send(msg("m2", "carol", "carol", now), "c2", true)
        .await
        .unwrap();
    assert_eq!(stored.routes, Some(vec![("carol".to_owned(), vec![])]));
    // Not asked for: nothing to route.
    let stored = f
        .store
        .send(msg("m3", "alice", "bob", now), "c3", false)
        .await
        .unwrap();
    assert_eq!(stored.routes, None);
    let retry = f
        .store
        .send(msg("m4", "alice", "bob", now), "c1", true)
        .await
        .unwrap();
    // A retry comes back with its first positions and its routes (the node
    // delivers it only when it answered the first attempt `unavailable`).
    assert!(retry.duplicate);
    assert_eq!(retry.msg.id, "m1");
    assert_eq!((retry.sender_pts, retry.receiver_pts), (1, Some(1)));
    assert_eq!(retry.routes.as_ref().map(|r| r.len()), Some(2));
}

async fn expired_tokens_are_refused(b: Backend) {
    let f = Fixture::new(b, KEEP_ALL);
    let now = now_ms();
    let rec = TokenRecord {
        user: "alice".into(),
        platform: "ios".into(),
        expires_at: now + 60_000,
    };
    let hash = ids::token_hash("ios.secret");
    f.store.put_token(&hash, &rec).await.unwrap();
    assert_eq!(
        f.store.get_token(&hash, now).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(f.store.get_token(&hash, now + 60_000).await.unwrap(), None);
    assert_eq!(
        f.store
            .get_token(&ids::token_hash("ios.other"), now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(f.store.delete_token(&hash).await.unwrap(), Some(rec));
    assert_eq!(f.store.get_token(&hash, now).await.unwrap(), None);
}

async fn retention_keeps_the_newest_entries_or_the_young_ones(b: Backend) {
    let f = Fixture::new(
        b,
        Retention {
            max_entries: 3,
            max_age_ms: 1000,
        },
    );
    let t0 = now_ms() - 60_000;
    // Three old messages, then two young ones.
    for (i, ts) in [t0, t0 + 1, t0 + 2, t0 + 10_000, t0 + 10_001]
        .into_iter()
        .enumerate()
    {
        f.store
            .send(
                msg(&format!("m{i}"), "alice", "bob", ts),
                &format!("c{i}"),
                false,
            )
            .await
            .unwrap();
    }
    for user in ["alice", "bob"] {
        let page = f.store.sync(user, 0, 100).await.unwrap();
        let pts: Vec<u64> = page.entries.iter().map(|e| e.pts).collect();
        assert_eq!(
            pts,
            vec![3, 4, 5],
            "{user}: old entries beyond the newest 3 are dropped"
        );
        assert_eq!(page.pts, 5);
    }
    // History is not trimmed.
    assert_eq!(
        f.store
            .history("dm:alice:bob", None, 100)
            .await
            .unwrap()
            .messages
            .len(),
        5
    );

    // Young entries stay even beyond max_entries.
    let now = now_ms();
    for i in 0..5 {
        f.store
            .send(
                msg(&format!("y{i}"), "carol", "dave", now),
                &format!("y{i}"),
                false,
            )
            .await
            .unwrap();
    }
    assert_eq!(f.store.sync("dave", 0, 100).await.unwrap().entries.len(), 5);
}

/// Positions come from list lengths in Redis (see send.lua): paging must
/// still hit the right entries after retention trims the front, and bounds
/// outside the stored range (including u64::MAX) just give empty pages.
async fn pages_follow_seq_and_pts_after_trimming_and_at_any_bound(b: Backend) {
    let f = Fixture::new(
        b,
        Retention {
            max_entries: 3,
            max_age_ms: 1000,
        },
    );
    let old = now_ms() - 100_000;
    for i in 0..6u64 {
        f.store
            .send(
                // 10 s apart: each entry is old when the next one comes.
                msg(&format!("m{i}"), "alice", "bob", old + i * 10_000),
                &format!("c{i}"),
                false,
            )
            .await
            .unwrap();
    }
    let pts = |page: &chat_node::store::SyncPage| -> Vec<u64> {
        page.entries.iter().map(|e| e.pts).collect()
    };
    // bob's inbox now holds pts 4..=6; 1..=3 were dropped.
    let page = f.store.sync("bob", 1, 100).await.unwrap();
    assert_eq!((pts(&page), page.more, page.pts), (vec![4, 5, 6], false, 6));
    assert_eq!(page.entries[0].msg.as_ref().unwrap().id, "m3");
    let page = f.store.sync("bob", 4, 1).await.unwrap();
    assert_eq!((pts(&page), page.more), (vec![5], true));
    assert_eq!(page.entries[0].msg.as_ref().unwrap().id, "m4");
    for after in [6, 7, u64::MAX] {
        let page = f.store.sync("bob", after, 10).await.unwrap();
        assert_eq!((pts(&page), page.more, page.pts), (vec![], false, 6));
    }
    let empty = f.store.sync("nobody", 0, 10).await.unwrap();
    assert_eq!((empty.entries.len(), empty.pts), (0, 0));

    let seqs = |before, limit| {
        let store = f.store.clone();
        async move {
            let page = store.history("dm:alice:bob", before, limit).await.unwrap();
            let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
            (seqs, page.more)
        }
    };
    assert_eq!(seqs(None, 2).await, (vec![5, 6], true));
    assert_eq!(seqs(Some(5), 2).await, (vec![3, 4], true));
    assert_eq!(seqs(Some(3), 5).await, (vec![1, 2], false));
    assert_eq!(
        seqs(Some(u64::MAX), 6).await,
        (vec![1, 2, 3, 4, 5, 6], false)
    );
    for before in [0, 1] {
        assert_eq!(seqs(Some(before), 5).await, (vec![], false));
    }
    let none = f.store.history("dm:nobody:zed", None, 5).await.unwrap();
    assert!(none.messages.is_empty() && !none.more);
}

async fn deregistering_spares_a_node_that_came_back(b: Backend) {
    let f = Fixture::new(b, KEEP_ALL);
    let node = |instance: &str, online| NodeRecord {
        port: 8760,
        name: "chat-1".into(),
        address: "chat-1:8760".into(),
        ready: true,
        online,
        heartbeat_ms: now_ms(),
        instance: instance.into(),
    };
    f.store.register_node(&node("old", 3)).await.unwrap();
    // The pod came back with the same ordinal: a new instance re-registers.
    f.store.register_node(&node("new", 0)).await.unwrap();
    assert!(!f.store.deregister_node(8760, "old").await.unwrap());
    let nodes = f.store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!((nodes[0].instance.as_str(), nodes[0].online), ("new", 0));
    assert!(f.store.deregister_node(8760, "new").await.unwrap());
    assert!(f.store.nodes().await.unwrap().is_empty());
}

/// Redis keeps client ids in one hash per sender and time bucket (a
/// bucket is the ttl long): a retry is recognised across a bucket
/// boundary for at least the ttl, and a client id two buckets old is
/// forgotten. The times are the messages' own, so no test waits a day.
#[tokio::test]
async fn a_client_id_is_remembered_across_a_bucket_boundary_on_redis() {
    let cluster = unique_cluster("store");
    let ttl_ms = 3_600_000;
    let store = RedisStore::new(&redis_url(), &cluster, KEEP_ALL, Duration::from_secs(2))
        .unwrap()
        .with_client_id_ttl(Duration::from_millis(ttl_ms));
    let f = Fixture {
        store: Arc::new(store),
        cluster,
        redis: true,
    };
    let boundary = now_ms() / ttl_ms * ttl_ms;
    let first = f
        .store
        .send(msg("m1", "alice", "bob", boundary - 1), "c-1", false)
        .await
        .unwrap();
    assert!(!first.duplicate);
    // The last millisecond of the ttl, in the next bucket.
    let again = f
        .store
        .send(
            msg("m2", "alice", "bob", boundary - 2 + ttl_ms),
            "c-1",
            false,
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.msg.id, "m1");
    assert_eq!(again.sender_pts, first.sender_pts);
    // Another user's same client id is theirs.
    let other = f
        .store
        .send(msg("m3", "bob", "alice", boundary), "c-1", false)
        .await
        .unwrap();
    assert!(!other.duplicate);
    // Two buckets on, the first is forgotten: a new message.
    let later = f
        .store
        .send(msg("m4", "alice", "bob", boundary + ttl_ms), "c-1", false)
        .await
        .unwrap();
    assert!(!later.duplicate);
    assert_eq!(later.msg.id, "m4");
}
