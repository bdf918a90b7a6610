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

use super::decode::{
    StreamEntry, as_array, corrupt, maybe_message, read_group_entries, stream_entries, stream_id_ms,
};
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
    consumer: String,
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
        RedisPushFeed {
            conn,
            keys,
            consumer,
            claim_after,
            group_ready: AtomicBool::new(false),
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Creates the stream and the group when missing; from the stream's
    /// start, so entries written before any pusher ran are delivered.
    async fn ensure_group(&self) -> Result<(), StoreError> {
        if self.group_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let r: Result<(), _> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.push_stream())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match r {
            Err(e) if e.code() != Some("BUSYGROUP") => return Err(unavailable(e)),
            _ => {}
        }
        self.group_ready.store(true, Ordering::Release);
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
        let stream = self.keys.push_stream();
        let entries = if claim {
            // [next cursor, [[id, fields]…], deleted ids]
            let reply: Value = ::redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(self.claim_after.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max.max(1))
                .query_async(&mut self.conn())
                .await
                .map_err(|e| self.on_error(unavailable(e)))?;
            let claimed = as_array(reply)?
                .into_iter()
                .nth(1)
                .ok_or_else(|| corrupt("short XAUTOCLAIM reply"))?;
            let claimed = stream_entries(claimed)?;
            if !claimed.is_empty() {
                tracing::info!(
                    entries = claimed.len(),
                    "pusher: claimed pushes left pending by another node"
                );
            }
            claimed
        } else {
            let reply: Value = ::redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(max.max(1))
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query_async(&mut self.conn())
                .await
                .map_err(|e| self.on_error(unavailable(e)))?;
            read_group_entries(reply)?
        };
        self.with_messages(entries).await
    }

    async fn hold(&self, key: &str) -> Result<(), StoreError> {
        let _: Value = ::redis::cmd("XCLAIM")
            .arg(self.keys.push_stream())
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(key)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn done(&self, key: &str) -> Result<(), StoreError> {
        let stream = self.keys.push_stream();
        let _: Value = ::redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(key)
            .cmd("XDEL")
            .arg(&stream)
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        ::redis::cmd("XLEN")
            .arg(self.keys.push_stream())
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}
