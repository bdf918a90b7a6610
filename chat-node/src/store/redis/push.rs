//! The offline push feed in Redis: the stream `chat:C:push`, which the send
//! scripts append to in the same atomic step as the message, read by each
//! node's pusher as one consumer of the group `pushers` (DESIGN.md,
//! "Offline push").
//!
//! New entries come by `XREADGROUP`; an entry stays pending under its
//! pusher until delivered or given up, then leaves the stream (`XACK` and
//! `XDEL` in one `MULTI`), so the stream's length is the backlog. A pusher
//! that is still retrying an entry holds it (`XCLAIM … JUSTID` to itself
//! resets its idle time); entries of a pusher that died sit idle and are
//! claimed by another after the claim timeout (`XAUTOCLAIM`). The operator
//! removes the consumers of runs that are gone, as it does the archivers'.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::Value;
use ::redis::aio::ConnectionManager;
use async_trait::async_trait;
use parley_cluster::Keys;
use parley_cluster::push::GROUP;

use super::decode::{StreamEntry, maybe_message, stream_id_ms};
use super::group_reader::GroupReader;
use super::unavailable;
use crate::store::{PushEntry, PushFeed, StoreError};

/// How long a read of the feed blocks when there is nothing new.
pub(super) const BLOCK: Duration = Duration::from_millis(500);

/// One pusher's view of the feed.
pub struct RedisPushFeed {
    /// Its own connection: the blocking read must not hold up the sends
    /// multiplexed on the store's.
    conn: ConnectionManager,
    keys: Keys,
    /// This pusher as a consumer of the feed's group.
    reader: GroupReader,
    claim_after: Duration,
    group_ready: AtomicBool,
}

impl RedisPushFeed {
    pub(super) fn new(
        conn: ConnectionManager,
        keys: Keys,
        consumer: String,
        claim_after: Duration,
    ) -> Self {
        let reader = GroupReader {
            stream: keys.push_stream(),
            group: GROUP,
            consumer,
        };
        RedisPushFeed {
            conn,
            keys,
            reader,
            claim_after,
            group_ready: AtomicBool::new(false),
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Creates the stream and the group when missing (once, until Redis
    /// loses them).
    async fn ensure_group(&self) -> Result<(), StoreError> {
        if !self.group_ready.load(Ordering::Acquire) {
            self.reader.create(&self.conn).await?;
            self.group_ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Entries with their messages, read in one pipeline.
    async fn with_messages(&self, entries: Vec<StreamEntry>) -> Result<Vec<PushEntry>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for (_, f) in &entries {
            pipe.cmd("HGETALL")
                .arg(self.keys.msg(f.get("i").map_or("", String::as_str)));
        }
        let msgs: Vec<Value> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        entries
            .into_iter()
            .zip(msgs)
            .map(|((key, mut f), m)| {
                Ok(PushEntry {
                    queued_ms: stream_id_ms(&key).unwrap_or(0),
                    key,
                    user: f.remove("u").unwrap_or_default(),
                    msg_id: f.remove("i").unwrap_or_default(),
                    msg: maybe_message(m)?,
                })
            })
            .collect()
    }

    /// Forgets the group when Redis lost it (a `FLUSHDB`, say): the next
    /// call makes it again.
    fn on_error(&self, e: StoreError) -> StoreError {
        if e.to_string().contains("NOGROUP") {
            self.group_ready.store(false, Ordering::Release);
        }
        e
    }
}

#[async_trait]
impl PushFeed for RedisPushFeed {
    async fn take(&self, max: usize, claim: bool) -> Result<Vec<PushEntry>, StoreError> {
        self.ensure_group().await?;
        let entries = if claim {
            let claimed = self.reader.claim(&self.conn, self.claim_after, max).await;
            let claimed = claimed.map_err(|e| self.on_error(e))?;
            if !claimed.is_empty() {
                tracing::info!(
                    entries = claimed.len(),
                    "pusher: claimed pushes left pending by another node"
                );
            }
            claimed
        } else {
            let read = self.reader.read(&self.conn, max, BLOCK).await;
            read.map_err(|e| self.on_error(e))?
        };
        self.with_messages(entries).await
    }

    async fn hold(&self, key: &str) -> Result<(), StoreError> {
        let _: Value = ::redis::cmd("XCLAIM")
            .arg(&self.reader.stream)
            .arg(self.reader.group)
            .arg(&self.reader.consumer)
            .arg(0)
            .arg(key)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn done(&self, key: &str) -> Result<(), StoreError> {
        let stream = &self.reader.stream;
        let _: Value = ::redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(stream)
            .arg(self.reader.group)
            .arg(key)
            .cmd("XDEL")
            .arg(stream)
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        ::redis::cmd("XLEN")
            .arg(&self.reader.stream)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}
