//! What the operator needs to clean up after nodes that are gone, on the
//! same key names and with compare-and-delete on the node run (instance id)
//! it judged gone, so a node that came back on the same port is never
//! touched (DESIGN.md, "Safety rules for collection"). The consumers of
//! the two feeds' groups (the archive feed and the offline push feed) are
//! read and removed here too: a consumer is named after its run
//! ([`crate::archive::consumer_name`]), and is removed only while it holds
//! no pending entries.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use redis::{AsyncCommands, Script};

use crate::keys::Keys;
use crate::registry::{PRESENCE_BATCH, Pages, Registry, RegistryError};

/// The streams node runs read as consumers of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The archive feed ([`Keys::archive_stream`], group
    /// [`crate::archive::GROUP`]).
    Archive,
    /// The offline push feed ([`Keys::push_stream`], group
    /// [`crate::push::GROUP`]).
    Push,
}

impl Feed {
    /// Both feeds.
    pub const ALL: [Feed; 2] = [Feed::Archive, Feed::Push];

    /// The feed's stream key.
    pub fn stream(self, keys: &Keys) -> String {
        match self {
            Feed::Archive => keys.archive_stream(),
            Feed::Push => keys.push_stream(),
        }
    }

    /// The consumer group its readers share.
    pub fn group(self) -> &'static str {
        match self {
            Feed::Archive => crate::archive::GROUP,
            Feed::Push => crate::push::GROUP,
        }
    }
}

/// What a cluster has in the registry, as the operator sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySnapshot {
    /// Every port named anywhere: the ports hash, node details, queue ports.
    pub ports: BTreeSet<u16>,
    /// Ports whose node ever declared a queue (`chat:C:queues`).
    pub queue_ports: BTreeSet<u16>,
}

/// How much one clean-up removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub registry: u64,
    pub presence: u64,
}

/// One consumer of a feed's group, as `XINFO CONSUMERS` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConsumer {
    /// `<port>:<instance>` for a node run ([`crate::archive::parse_consumer`]).
    pub name: String,
    /// Entries delivered to it and not yet acknowledged.
    pub pending: u64,
    /// Milliseconds since it last read.
    pub idle_ms: u64,
}

/// What a compare-and-delete of a feed consumer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRemoval {
    /// It had no pending entries and is gone now.
    Removed,
    /// There was no such consumer (or no stream or group).
    Absent,
    /// Kept: it holds this many entries, which live consumers claim after
    /// the claim timeout (`CHAT_ARCHIVE_CLAIM_S`, `CHAT_PUSH_CLAIM_S`); try
    /// again later.
    Pending(u64),
}

/// The feed consumer scripts, each with the shared group reader first.
struct FeedScripts {
    consumers: Script,
    remove: Script,
}

fn feed_scripts() -> &'static FeedScripts {
    static SCRIPTS: OnceLock<FeedScripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| FeedScripts {
        consumers: Script::new(concat!(
            include_str!("lua/feed_group.lua"),
            include_str!("lua/feed_consumers.lua")
        )),
        remove: Script::new(concat!(
            include_str!("lua/feed_group.lua"),
            include_str!("lua/remove_feed_consumer.lua")
        )),
    })
}

impl Registry {
    /// The consumers of a feed's group; none when the stream or the group
    /// does not exist (no archive or webhook, or nothing sent yet).
    pub async fn feed_consumers(&self, feed: Feed) -> Result<Vec<FeedConsumer>, RegistryError> {
        let rows: Vec<(String, u64, u64)> = feed_scripts()
            .consumers
            .key(feed.stream(self.keys()))
            .arg(feed.group())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(name, pending, idle_ms)| FeedConsumer {
                name,
                pending,
                idle_ms,
            })
            .collect())
    }

    /// Removes consumer `name` of a feed's group if it holds no pending
    /// entries, in one step (`XGROUP DELCONSUMER` would drop its entries
    /// from the group, and they would never be archived or pushed).
    pub async fn remove_feed_consumer(
        &self,
        feed: Feed,
        name: &str,
    ) -> Result<ConsumerRemoval, RegistryError> {
        let (outcome, pending): (String, u64) = feed_scripts()
            .remove
            .key(feed.stream(self.keys()))
            .arg(feed.group())
            .arg(name)
            .invoke_async(&mut self.conn())
            .await?;
        match outcome.as_str() {
            "removed" => Ok(ConsumerRemoval::Removed),
            "absent" => Ok(ConsumerRemoval::Absent),
            "pending" => Ok(ConsumerRemoval::Pending(pending)),
            other => Err(RegistryError::Corrupt(format!(
                "feed consumer removal answered {other}"
            ))),
        }
    }

    /// The ports this cluster's registry knows of.
    pub async fn registry_snapshot(&self) -> Result<RegistrySnapshot, RegistryError> {
        let mut conn = self.conn();
        let k = self.keys();
        let fields: Vec<u16> = conn.hkeys(k.ports()).await?;
        let queue_ports: BTreeSet<u16> = conn.smembers(k.queue_ports()).await?;
        let mut ports: BTreeSet<u16> = fields.into_iter().collect();
        ports.extend(queue_ports.iter().copied());
        Ok(RegistrySnapshot { ports, queue_ports })
    }

    /// The runs (instance ids) of the node on `port` that left details or
    /// presence behind. Reads the node's user set a page of
    /// [`PRESENCE_BATCH`] at a time, one script call per page.
    pub async fn node_runs(&self, port: u16) -> Result<BTreeSet<String>, RegistryError> {
        Ok(self.node_runs_paged(port, PRESENCE_BATCH).await?.0)
    }

    /// [`Registry::node_runs`] with pages of `batch` members.
    pub(crate) async fn node_runs_paged(
        &self,
        port: u16,
        batch: u32,
    ) -> Result<(BTreeSet<String>, Pages), RegistryError> {
        let k = self.keys();
        let (details, users, prefix) = (k.node(port), k.node_users(port), k.presence_prefix());
        let mut conn = self.conn();
        let (mut cursor, mut runs, mut pages) = ("0".to_owned(), BTreeSet::new(), Pages::default());
        loop {
            let (next, scanned, page): (String, u64, Vec<String>) = self
                .scripts()
                .node_runs
                .key(&details)
                .key(&users)
                .arg(port)
                .arg(&prefix)
                .arg(&cursor)
                .arg(batch)
                .invoke_async(&mut conn)
                .await?;
            runs.extend(page);
            pages.add(scanned);
            if next == "0" {
                return Ok((runs, pages));
            }
            cursor = next;
        }
    }

    /// The node run `instance` on `port` is gone for good (its ordinal was
    /// scaled away): remove its registry entry, details and presence.
    pub async fn retire_run(&self, port: u16, instance: &str) -> Result<Removed, RegistryError> {
        self.collect_run(port, instance, "retire").await
    }

    /// The node run `instance` on `port` is gone but its ordinal will come
    /// back: clear its presence and online count, keep its entry.
    pub async fn reset_run(&self, port: u16, instance: &str) -> Result<Removed, RegistryError> {
        self.collect_run(port, instance, "reset").await
    }

    async fn collect_run(
        &self,
        port: u16,
        instance: &str,
        mode: &str,
    ) -> Result<Removed, RegistryError> {
        let k = self.keys();
        let registry: u64 = self
            .scripts()
            .collect_run
            .key(k.ports())
            .key(k.node(port))
            .arg(port)
            .arg(instance)
            .arg(mode)
            .invoke_async(&mut self.conn())
            .await?;
        // The same compare-and-delete a node uses on its own stale presence.
        let presence = self.clear_presence(port, instance, false).await?;
        Ok(Removed { registry, presence })
    }

    /// The queue of `port` is deleted and no run is left: forget the port.
    /// Only a ports field without details (no live run) is removed.
    pub async fn forget_port(&self, port: u16) -> Result<(), RegistryError> {
        let k = self.keys();
        let mut conn = self.conn();
        let _: () = conn.srem(k.queue_ports(), port).await?;
        let details: bool = conn.exists(k.node(port)).await?;
        if !details {
            let _: () = conn.hdel(k.ports(), port).await?;
        }
        Ok(())
    }

    /// Deletes every key of the cluster matching `pattern` (relative to
    /// `chat:C:`); returns how many. Used on ChatCluster deletion.
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, RegistryError> {
        let mut conn = self.conn();
        let full = format!("{}{pattern}", self.keys().prefix());
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&full)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = conn.del(&keys).await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests;
