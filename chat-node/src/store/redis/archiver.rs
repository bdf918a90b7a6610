//! The archiver: drains the archive feed (`chat:C:archive`, written by the
//! send script in the same step as each message) into SQL, as one consumer
//! of the cluster's consumer group (DESIGN.md, "Storage tiers").
//!
//! One batch at a time: read entries (`XREADGROUP`), read their messages,
//! insert them into SQL (an idempotent upsert), and only once that has
//! committed run `archived.lua`, which marks them archived, acknowledges
//! and deletes the entries, and lets messages beyond the hot window leave
//! Redis. A batch that SQL refuses stays pending under this consumer and is
//! retried until it commits; entries left pending by a consumer that died
//! are claimed (`XAUTOCLAIM`) once idle for the claim timeout. Whatever
//! crashes where, an entry is acknowledged only after its message is in
//! SQL, and a replay inserts nothing twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Value};
use parley_cluster::Keys;
use parley_cluster::archive::GROUP;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::decode::{
    StreamEntry, as_array, as_string, as_u64, maybe_message, stream_entries, stream_id_ms,
};
use super::group_reader::GroupReader;
use super::{Scripts, unavailable};
use crate::archive::{Archive, ArchiveError};
use crate::ids::now_ms;
use crate::protocol::Message;
use crate::shutdown::Listener;
use crate::store::StoreError;

/// How an archiver works.
#[derive(Debug, Clone)]
pub struct ArchiverSettings {
    /// Most entries per batch (one SQL statement).
    pub batch: usize,
    /// Entries pending this long under another consumer are claimed.
    pub claim_after: Duration,
    /// The hot window: a conversation's newest `hot_messages`, and every
    /// message younger than `hot`, stay in Redis.
    pub hot_messages: u64,
    pub hot: Duration,
}

/// What an archiver reports in `/metrics`.
#[derive(Clone, Default)]
pub struct ArchiverMetrics {
    /// Messages written to SQL (a replayed one counts again).
    pub archived: Counter,
    /// Batches SQL refused (retried).
    pub errors: Counter,
    /// Messages SQL refused for their data, each time it did: they stay in
    /// Redis and their entries pending (tried again after the claim
    /// timeout), so that they hold up nothing else.
    pub rejected: Counter,
    /// Messages that left Redis.
    pub trimmed: Counter,
    /// Feed entries not yet archived, and the age of the oldest, in seconds.
    pub lag_entries: Gauge,
    pub lag_seconds: Gauge,
}

/// How long a read of the feed blocks when there is nothing new.
pub(super) const BLOCK: Duration = Duration::from_millis(500);
/// How often the lag is read, and the trim schedule swept.
const TICK: Duration = Duration::from_secs(1);
/// Most conversations one sweep of the trim schedule handles.
const SWEEP: usize = 64;

/// One archiver (see the module documentation).
pub struct Archiver {
    conn: ConnectionManager,
    keys: Keys,
    scripts: Arc<Scripts>,
    sql: Arc<Archive>,
    settings: ArchiverSettings,
    /// This archiver as a consumer of the feed's group.
    reader: GroupReader,
    metrics: ArchiverMetrics,
}

/// One feed entry: its stream id and the message it names.
#[derive(Debug, Clone)]
struct Entry {
    stream_id: String,
    msg_id: String,
}

impl Archiver {
    pub(super) fn new(
        conn: ConnectionManager,
        keys: Keys,
        scripts: Arc<Scripts>,
        sql: Arc<Archive>,
        settings: ArchiverSettings,
        consumer: String,
        metrics: ArchiverMetrics,
    ) -> Self {
        let reader = GroupReader {
            stream: keys.archive_stream(),
            group: GROUP,
            consumer,
        };
        Archiver {
            conn,
            keys,
            scripts,
            sql,
            settings,
            reader,
            metrics,
        }
    }

    /// Archives until `stop`; the batch in hand is finished first (or left
    /// pending, for another archiver to claim, if SQL is down).
    pub async fn run(self, mut stop: Listener) {
        let mut backoff = Duration::from_millis(100);
        let mut last_tick = Instant::now() - TICK;
        let mut last_claim = Instant::now();
        let mut group_ready = false;
        while !stop.is_set() {
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick().await;
            }
            let step = async {
                if !group_ready {
                    self.create_group().await?;
                    group_ready = true;
                }
                let claim = last_claim.elapsed() >= self.settings.claim_after / 2;
                if claim {
                    last_claim = Instant::now();
                }
                let entries = if claim {
                    self.claim().await?
                } else {
                    self.read().await?
                };
                if !entries.is_empty() {
                    self.archive_batch(&entries, &mut stop).await?;
                }
                Ok::<_, StoreError>(())
            };
            match step.await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    if e.to_string().contains("NOGROUP") {
                        // The stream was deleted (FLUSHDB, say): make it again.
                        group_ready = false;
                    }
                    tracing::warn!(error = %e, "archiver: Redis step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Creates the stream and the group when missing.
    async fn create_group(&self) -> Result<(), StoreError> {
        self.reader.create(&self.conn).await
    }

    /// New entries for this consumer (waits up to [`BLOCK`] for some).
    async fn read(&self) -> Result<Vec<Entry>, StoreError> {
        let read = self.reader.read(&self.conn, self.settings.batch, BLOCK);
        Ok(read.await?.into_iter().map(entry).collect())
    }

    /// Entries pending under any consumer for longer than the claim
    /// timeout, now this consumer's (one page of them).
    async fn claim(&self) -> Result<Vec<Entry>, StoreError> {
        let claimed = self
            .reader
            .claim(&self.conn, self.settings.claim_after, self.settings.batch)
            .await?;
        let claimed: Vec<Entry> = claimed.into_iter().map(entry).collect();
        if !claimed.is_empty() {
            tracing::info!(
                entries = claimed.len(),
                "archiver: claimed entries left pending by another consumer"
            );
        }
        Ok(claimed)
    }

    /// Writes one batch to SQL, retrying until it commits (or until `stop`,
    /// leaving the entries pending), then marks and acknowledges it.
    async fn archive_batch(&self, batch: &[Entry], stop: &mut Listener) -> Result<(), StoreError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            // Read the messages anew on every attempt: one may have changed.
            let msgs = self.messages(batch).await?;
            let rows: Vec<Message> = msgs.iter().flatten().map(|(m, _)| m.clone()).collect();
            let failed = match self.sql.insert(&rows).await {
                Ok(()) => {
                    self.metrics.archived.inc_by(rows.len() as u64);
                    return self.acknowledge(batch, &msgs).await;
                }
                Err(ArchiveError::Refused(why)) => {
                    self.metrics.errors.inc();
                    tracing::warn!(error = %why, entries = batch.len(), "archiver: SQL refused a batch for its data; writing its messages one by one");
                    match self.archive_one_by_one(batch, &msgs).await {
                        Ok(()) => return Ok(()),
                        Err(e) => e,
                    }
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    e
                }
            };
            tracing::warn!(error = %failed, entries = batch.len(), "archiver: SQL refused a batch; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait() => return Ok(()),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            self.tick().await;
        }
    }

    /// A batch SQL refused for its data: each message is written alone, so
    /// one that SQL can never hold (a value from an older build, say) holds
    /// up only itself. What SQL took is acknowledged; a refused message's
    /// entry stays pending (claimed and tried again after the claim
    /// timeout, logged and counted each time) and the message stays in
    /// Redis. An error other than a refusal leaves the whole batch pending.
    async fn archive_one_by_one(
        &self,
        batch: &[Entry],
        msgs: &[Option<(Message, String)>],
    ) -> Result<(), ArchiveError> {
        let mut taken = Vec::with_capacity(batch.len());
        let mut taken_msgs = Vec::with_capacity(batch.len());
        for (e, m) in batch.iter().zip(msgs) {
            if let Some((msg, _)) = m {
                match self.sql.insert(std::slice::from_ref(msg)).await {
                    Ok(()) => {
                        self.metrics.archived.inc();
                    }
                    Err(ArchiveError::Refused(why)) => {
                        self.metrics.rejected.inc();
                        tracing::error!(message = %e.msg_id, conv = %msg.conv, error = %why,
                            "archiver: SQL refuses this message; it stays in Redis, its feed entry pending");
                        continue;
                    }
                    Err(other) => return Err(other),
                }
            }
            taken.push(e.clone());
            taken_msgs.push(m.clone());
        }
        if !taken.is_empty() {
            self.acknowledge(&taken, &taken_msgs)
                .await
                .map_err(|e| ArchiveError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }

    /// The messages the entries name, each with the `rev` it was read at;
    /// `None` for one that left Redis already (archived before).
    async fn messages(
        &self,
        batch: &[Entry],
    ) -> Result<Vec<Option<(Message, String)>>, StoreError> {
        let mut pipe = ::redis::pipe();
        for e in batch {
            pipe.cmd("HGETALL").arg(self.keys.msg(&e.msg_id));
        }
        let replies: Vec<Value> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        replies
            .into_iter()
            .map(|v| {
                let rev = rev_of(&v);
                Ok(maybe_message(v)?.map(|m| (m, rev)))
            })
            .collect()
    }

    /// `archived.lua` for a committed batch.
    async fn acknowledge(
        &self,
        batch: &[Entry],
        msgs: &[Option<(Message, String)>],
    ) -> Result<(), StoreError> {
        let convs: BTreeSet<&str> = msgs
            .iter()
            .flatten()
            .map(|(m, _)| m.conv.as_str())
            .collect();
        let mut inv = self.trim_call(batch.len());
        for (e, m) in batch.iter().zip(msgs) {
            let rev = m.as_ref().map_or("0", |(_, r)| r.as_str());
            inv.arg(&e.stream_id).arg(&e.msg_id).arg(rev);
        }
        for c in convs {
            inv.arg(c);
        }
        self.run_trim(inv).await
    }

    /// Lets archived messages of conversations whose scheduled time has
    /// come leave Redis, and reads the lag.
    async fn tick(&self) {
        if let Err(e) = self.sweep().await {
            tracing::debug!(error = %e, "archiver: sweep failed");
        }
        match self.lag().await {
            Ok((entries, seconds)) => {
                self.metrics.lag_entries.set(entries as i64);
                self.metrics.lag_seconds.set(seconds as i64);
            }
            Err(e) => tracing::debug!(error = %e, "archiver: cannot read the lag"),
        }
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        let due: Vec<String> = self
            .conn
            .clone()
            .zrangebyscore_limit(
                self.keys.archive_trim(),
                "-inf",
                now_ms(),
                0,
                SWEEP as isize,
            )
            .await
            .map_err(unavailable)?;
        if due.is_empty() {
            return Ok(());
        }
        let mut inv = self.trim_call(0);
        for c in &due {
            inv.arg(c);
        }
        self.run_trim(inv).await
    }

    /// An `archived.lua` call for `n` entries, before its arguments.
    fn trim_call(&self, n: usize) -> ::redis::ScriptInvocation<'_> {
        let mut inv = self.scripts.archived.prepare_invoke();
        inv.key(self.keys.archive_stream())
            .key(self.keys.archive_trim())
            .arg(GROUP)
            .arg(self.keys.msg_prefix())
            .arg(format!("{}conv:", self.keys.prefix()))
            .arg(self.settings.hot_messages)
            .arg(now_ms())
            .arg(self.settings.hot.as_millis() as u64)
            .arg(n);
        inv
    }

    async fn run_trim(&self, inv: ::redis::ScriptInvocation<'_>) -> Result<(), StoreError> {
        let reply: Value = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let counts = as_array(reply)?;
        let trimmed = counts.get(2).map(as_u64).transpose()?.unwrap_or(0);
        self.metrics.trimmed.inc_by(trimmed);
        Ok(())
    }

    /// Entries in the feed not yet archived, and the age of the oldest in
    /// seconds (stream ids start with their time in milliseconds).
    async fn lag(&self) -> Result<(u64, u64), StoreError> {
        let stream = self.keys.archive_stream();
        let (len, oldest): (u64, Value) = ::redis::pipe()
            .cmd("XLEN")
            .arg(&stream)
            .cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let oldest_ms = stream_entries(oldest)?
            .first()
            .and_then(|(id, _)| stream_id_ms(id));
        let seconds = oldest_ms.map_or(0, |ms| now_ms().saturating_sub(ms) / 1000);
        Ok((len, seconds))
    }
}

/// The `rev` field of a message hash reply ("0" when absent).
fn rev_of(v: &Value) -> String {
    let items: &[Value] = match v {
        Value::Array(a) => a,
        _ => return "0".into(),
    };
    items
        .chunks(2)
        .find_map(|kv| match kv {
            [k, v] if as_string(k).ok().as_deref() == Some("rev") => as_string(v).ok(),
            _ => None,
        })
        .unwrap_or_else(|| "0".into())
}

/// A feed entry as an [`Entry`]. One without a message id (no parley code
/// writes one) is acknowledged all the same, as naming no message.
fn entry((stream_id, mut fields): StreamEntry) -> Entry {
    Entry {
        stream_id,
        msg_id: fields.remove("i").unwrap_or_default(),
    }
}
