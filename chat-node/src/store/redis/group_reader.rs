//! One consumer of a Redis Stream consumer group: the commands both feeds'
//! readers use, the archiver (store/redis/archiver.rs) and the pusher
//! (store/redis/push.rs). Each keeps its own batching, logging and what it
//! does with an entry; the group, its creation and the reading and
//! claiming of entries are here once.

use std::time::Duration;

use ::redis::Value;
use ::redis::aio::ConnectionManager;

use super::decode::{StreamEntry, as_array, corrupt, read_group_entries, stream_entries};
use super::unavailable;
use crate::store::StoreError;

/// Consumer `consumer` of group `group` on stream `stream`.
pub(super) struct GroupReader {
    pub stream: String,
    pub group: &'static str,
    pub consumer: String,
}

impl GroupReader {
    /// Creates the stream and the group when missing, the group from the
    /// stream's start (entries written before any reader ran are read).
    pub async fn create(&self, conn: &ConnectionManager) -> Result<(), StoreError> {
        let r: Result<(), _> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn.clone())
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            r => r.map_err(unavailable),
        }
    }

    /// Up to `count` new entries for this consumer, waiting up to `block`
    /// for some.
    pub async fn read(
        &self,
        conn: &ConnectionManager,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let reply: Value = ::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut conn.clone())
            .await
            .map_err(unavailable)?;
        read_group_entries(reply)
    }

    /// Up to `count` entries pending under any consumer for longer than
    /// `min_idle`, now this consumer's.
    pub async fn claim(
        &self,
        conn: &ConnectionManager,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let reply: Value = ::redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(self.group)
            .arg(&self.consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut conn.clone())
            .await
            .map_err(unavailable)?;
        // [next cursor, [[id, [field, value…]]…], deleted ids]
        let claimed = as_array(reply)?
            .into_iter()
            .nth(1)
            .ok_or_else(|| corrupt("short XAUTOCLAIM reply"))?;
        stream_entries(claimed)
    }
}
