//! The feed consumer scripts against a real Redis (`CHAT_TEST_REDIS_URL`,
//! default 127.0.0.1:6379), for the archive feed and the push feed alike:
//! consumers are read from the group, and removed only while they hold no
//! pending entries.

use std::time::Duration;

use super::*;
use crate::archive::consumer_name;
use crate::registry::connect;

fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A registry on a cluster id of its own; the feed's stream is deleted on drop.
struct Scratch {
    registry: Registry,
    conn: redis::Connection,
    feed: Feed,
}

impl Scratch {
    fn new(tag: &str, feed: Feed) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let cluster = format!("t-{tag}-{}-{nanos}", std::process::id());
        let manager = connect(&redis_url(), Duration::from_secs(5)).expect("Redis URL");
        let conn = redis::Client::open(redis_url())
            .and_then(|c| c.get_connection())
            .expect("Redis");
        Scratch {
            registry: Registry::new(manager, &cluster),
            conn,
            feed,
        }
    }

    fn stream(&self) -> String {
        self.feed.stream(self.registry.keys())
    }

    fn consumers(&self) -> impl Future<Output = Result<Vec<FeedConsumer>, RegistryError>> {
        self.registry.feed_consumers(self.feed)
    }

    fn remove(&self, name: &str) -> impl Future<Output = Result<ConsumerRemoval, RegistryError>> {
        self.registry.remove_feed_consumer(self.feed, name)
    }

    /// Runs one command on the feed's stream, after its name.
    fn on_stream<T: redis::FromRedisValue>(&mut self, cmd: &str, args: &[&str]) -> T {
        let stream = self.stream();
        let mut c = redis::cmd(cmd);
        match cmd {
            // Subcommand first, then the key.
            "XGROUP" => c.arg(args[0]).arg(&stream).arg(&args[1..]),
            _ => c.arg(&stream).arg(args),
        };
        c.query(&mut self.conn).expect(cmd)
    }

    /// The group with consumers `idle` (nothing read) and `busy` (holding
    /// `n` entries).
    fn group(&mut self, idle: &str, busy: &str, n: usize) {
        let group = self.feed.group();
        let _: () = self.on_stream("XGROUP", &["CREATE", group, "$", "MKSTREAM"]);
        let _: i64 = self.on_stream("XGROUP", &["CREATECONSUMER", group, idle]);
        for i in 0..n {
            let _: String = self.on_stream("XADD", &["*", "i", &format!("m{i}")]);
        }
        let stream = self.stream();
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(busy)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query(&mut self.conn)
            .expect("XREADGROUP");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(self.stream()).query(&mut self.conn);
    }
}

fn pending_of(consumers: &[FeedConsumer], name: &str) -> Option<u64> {
    consumers.iter().find(|c| c.name == name).map(|c| c.pending)
}

#[tokio::test]
async fn a_missing_stream_or_group_has_no_consumers() {
    for feed in Feed::ALL {
        let mut s = Scratch::new("no-group", feed);
        assert!(s.consumers().await.unwrap().is_empty());
        assert_eq!(
            s.remove("8750:gone").await.unwrap(),
            ConsumerRemoval::Absent
        );
        // A stream with entries but no group yet (no consumer ever started).
        let _: String = s.on_stream("XADD", &["*", "i", "m"]);
        assert!(s.consumers().await.unwrap().is_empty());
        assert_eq!(
            s.remove("8750:gone").await.unwrap(),
            ConsumerRemoval::Absent
        );
    }
}

#[tokio::test]
async fn consumers_are_listed_with_their_pending_entries() {
    for feed in Feed::ALL {
        let mut s = Scratch::new("list", feed);
        let (idle, busy) = (consumer_name(8750, "a"), consumer_name(8760, "b"));
        s.group(&idle, &busy, 3);
        let consumers = s.consumers().await.unwrap();
        assert_eq!(consumers.len(), 2, "{feed:?}: {consumers:?}");
        assert_eq!(pending_of(&consumers, &idle), Some(0));
        assert_eq!(pending_of(&consumers, &busy), Some(3));
        assert!(
            consumers.iter().all(|c| c.idle_ms < 60_000),
            "{consumers:?}"
        );
    }
}

#[tokio::test]
async fn a_consumer_is_removed_only_once_its_entries_are_claimed_by_another() {
    for feed in Feed::ALL {
        consumer_removal(Scratch::new("remove", feed)).await;
    }
}

async fn consumer_removal(mut s: Scratch) {
    let (idle, busy) = (consumer_name(8750, "a"), consumer_name(8760, "b"));
    s.group(&idle, &busy, 2);
    assert_eq!(s.remove(&idle).await.unwrap(), ConsumerRemoval::Removed);
    assert_eq!(s.remove(&busy).await.unwrap(), ConsumerRemoval::Pending(2));
    let left = s.consumers().await.unwrap();
    assert_eq!(pending_of(&left, &busy), Some(2), "kept with its entries");
    assert_eq!(pending_of(&left, &idle), None);

    // A live consumer takes the entries over (as after the claim timeout)
    // and acknowledges them: now the gone consumer can go.
    let live = consumer_name(8770, "c");
    let group = s.feed.group();
    let _: redis::Value = s.on_stream("XAUTOCLAIM", &[group, &live, "0", "0"]);
    assert_eq!(s.remove(&busy).await.unwrap(), ConsumerRemoval::Removed);
    let left = s.consumers().await.unwrap();
    assert_eq!(
        pending_of(&left, &live),
        Some(2),
        "the claimed entries are kept"
    );
    assert_eq!(pending_of(&left, &busy), None);
    assert_eq!(s.remove(&busy).await.unwrap(), ConsumerRemoval::Absent);
}
