//! The Redis store (production). Every write that must be atomic is one Lua
//! script, so one round trip either changes everything or nothing. The
//! connection manager reconnects by itself when Redis comes back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script, Value};
use async_trait::async_trait;
use parley_cluster::keys::client_id_buckets;
use parley_cluster::{Keys, Registry};

pub mod archiver;
mod decode;
mod group_reader;
mod groups;
pub mod push;

use self::decode::{
    InboxRef, as_array, as_i64, as_string, as_u64, corrupt, inbox_event, maybe_message,
    message_from_value, nodes_from_value, token_from_fields,
};
use super::*;
use crate::archive::Archive;

/// The Lua scripts, loaded once per process and cached by Redis by SHA.
struct Scripts {
    send: Script,
    sync: Script,
    history: Script,
    read: Script,
    played: Script,
    join: Script,
    leave: Script,
    archived: Script,
    group: Script,
    conversations: Script,
    recall: Script,
    jwt_put: Script,
    jwt_revoke: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            send: Script::new(include_str!("../lua/send.lua")),
            sync: Script::new(include_str!("../lua/sync.lua")),
            history: Script::new(include_str!("../lua/history.lua")),
            read: Script::new(include_str!("../lua/read.lua")),
            played: Script::new(include_str!("../lua/played.lua")),
            join: Script::new(include_str!("../lua/join.lua")),
            leave: Script::new(include_str!("../lua/leave.lua")),
            archived: Script::new(include_str!("../lua/archived.lua")),
            group: Script::new(concat!(
                include_str!("../lua/inbox.lua"),
                include_str!("../lua/group.lua")
            )),
            conversations: Script::new(include_str!("../lua/conversations.lua")),
            recall: Script::new(concat!(
                include_str!("../lua/inbox.lua"),
                include_str!("../lua/recall.lua")
            )),
            jwt_put: Script::new(include_str!("../lua/jwt_put.lua")),
            jwt_revoke: Script::new(include_str!("../lua/jwt_revoke.lua")),
        }
    }
}

/// A store in one Redis database, under `chat:C:`.
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    /// The node registry and presence clean-up, shared with the operator.
    registry: Registry,
    retention: Retention,
    /// Where Redis is, and the command deadline: the archiver opens a
    /// connection of its own (its reads block).
    url: String,
    timeout: Duration,
    client_id_ttl_ms: u64,
    scripts: Arc<Scripts>,
    /// With an archive: messages leave Redis once archived and beyond the
    /// hot window, and reads go through to SQL for them.
    archive: Option<Feed>,
    /// With a push webhook: the most entries the push feed may hold (0:
    /// no webhook, no entries).
    push_max: u64,
}

/// The archive side of a Redis store.
#[derive(Clone)]
struct Feed {
    sql: Arc<Archive>,
    /// Most entries the feed may hold before sends are refused.
    max_lag: u64,
}

impl RedisStore {
    /// Prepares a store; connects lazily, so a node starts while Redis is
    /// down and becomes ready when it answers.
    pub fn new(
        url: &str,
        cluster: &str,
        retention: Retention,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let conn = parley_cluster::registry::connect(url, timeout)?;
        Ok(RedisStore {
            registry: Registry::new(conn.clone(), cluster),
            conn,
            keys: Keys::new(cluster),
            retention,
            url: url.to_owned(),
            timeout,
            client_id_ttl_ms: CLIENT_ID_TTL_MS,
            scripts: Arc::new(Scripts::new()),
            archive: None,
            push_max: 0,
        })
    }

    /// Feeds the offline push webhook: the send scripts append an entry
    /// for each receiver with no live session while the feed holds fewer
    /// than `max_entries`, and [`RedisStore::push_feed`] reads them.
    pub fn with_push(mut self, max_entries: u64) -> Self {
        self.push_max = max_entries.max(1);
        self
    }

    /// Archives every message to `sql`: the send script appends it to the
    /// feed, and refuses sends once the feed holds `max_lag` entries.
    pub fn with_archive(mut self, sql: Arc<Archive>, max_lag: u64) -> Self {
        self.archive = Some(Feed { sql, max_lag });
        self
    }

    /// How long a client message id is remembered (the protocol promises
    /// 24 hours; shorter only for tests and benchmarks).
    pub fn with_client_id_ttl(mut self, ttl: Duration) -> Self {
        self.client_id_ttl_ms = ttl.as_millis().max(1) as u64;
        self
    }

    /// The archive, when there is one.
    pub fn archive(&self) -> Option<&Arc<Archive>> {
        self.archive.as_ref().map(|f| &f.sql)
    }

    /// An archiver draining this store's feed into its archive as consumer
    /// `consumer`; `None` without an archive.
    pub fn archiver(
        &self,
        settings: archiver::ArchiverSettings,
        consumer: String,
        metrics: archiver::ArchiverMetrics,
    ) -> Result<Option<archiver::Archiver>, StoreError> {
        let Some(feed) = self.archive.as_ref() else {
            return Ok(None);
        };
        // Its own connection: a blocking read must not hold up the sends
        // multiplexed on the store's.
        let conn = parley_cluster::registry::connect(&self.url, self.timeout + archiver::BLOCK)?;
        Ok(Some(archiver::Archiver::new(
            conn,
            self.keys.clone(),
            self.scripts.clone(),
            feed.sql.clone(),
            settings,
            consumer,
            metrics,
        )))
    }

    /// The push feed as pusher `consumer` reads it, taking over entries
    /// other pushers held idle for `claim_after`; `None` without a webhook.
    pub fn push_feed(
        &self,
        consumer: String,
        claim_after: Duration,
    ) -> Result<Option<push::RedisPushFeed>, StoreError> {
        if self.push_max == 0 {
            return Ok(None);
        }
        let conn = parley_cluster::registry::connect(&self.url, self.timeout + push::BLOCK)?;
        Ok(Some(push::RedisPushFeed::new(
            conn,
            self.keys.clone(),
            consumer,
            claim_after,
        )))
    }

    /// The message id recorded for `user`'s `client_id` by a send at `ts`
    /// (in the buckets that send read), for a retry whose first message
    /// has left Redis since.
    async fn client_id_message(
        &self,
        user: &str,
        client_id: &str,
        ts: u64,
    ) -> Result<String, StoreError> {
        let (bucket, before, _) = client_id_buckets(ts, self.client_id_ttl_ms);
        let mut conn = self.conn();
        for b in [bucket, before] {
            let v: Option<String> = conn
                .hget(self.keys.client_ids(user, b), client_id)
                .await
                .map_err(unavailable)?;
            if let Some(v) = v {
                return Ok(v.split(':').next().unwrap_or_default().to_owned());
            }
        }
        Err(corrupt("client id expired while read"))
    }

    /// The archive, or the error a read of a message that left Redis gets
    /// without one (it cannot happen: nothing leaves Redis without an archive).
    fn sql(&self) -> Result<&Archive, StoreError> {
        self.archive
            .as_ref()
            .map(|f| f.sql.as_ref())
            .ok_or_else(|| corrupt("a message is missing from Redis and there is no archive"))
    }

    /// A message by id from the archive (it has left Redis).
    async fn archived_message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        Ok(self.sql()?.by_ids(&[id]).await?.into_iter().next())
    }

    fn conn(&self) -> ConnectionManager {
        // Cheap: a handle onto one multiplexed connection.
        self.conn.clone()
    }
}

/// A Redis error as the store reports it (the registry's rule: I/O and
/// timeouts are "unavailable", anything else "corrupt").
fn unavailable(e: ::redis::RedisError) -> StoreError {
    parley_cluster::RegistryError::from(e).into()
}

impl RedisStore {
    /// Fills the `gone` slots of `entries` (inbox entries whose message left
    /// Redis) from the archive, by `(conv, seq)`, or by id for entries
    /// written before inbox entries carried them.
    async fn fill_from_archive(
        &self,
        entries: &mut [Option<InboxEntry>],
        gone: Vec<(usize, InboxRef)>,
    ) -> Result<(), StoreError> {
        let sql = self.sql()?;
        let keys: Vec<(String, u64)> = gone.iter().filter_map(|(_, r)| r.key.clone()).collect();
        let ids: Vec<&str> = gone
            .iter()
            .filter(|(_, r)| r.key.is_none())
            .map(|(_, r)| r.id.as_str())
            .collect();
        let mut found: HashMap<String, Message> = HashMap::new();
        for m in sql.by_keys(&keys).await? {
            found.insert(m.id.clone(), m);
        }
        for m in sql.by_ids(&ids).await? {
            found.insert(m.id.clone(), m);
        }
        for (slot, r) in gone {
            let msg = found
                .get(&r.id)
                .cloned()
                .ok_or_else(|| corrupt(format!("message {} is in no tier", r.id)))?;
            entries[slot] = Some(InboxEntry::message(r.pts, msg));
        }
        Ok(())
    }

    /// `played` for a message that left Redis: checked and written in SQL.
    async fn mark_played_archived(
        &self,
        user: &str,
        msg_id: &str,
    ) -> Result<PlayedOutcome, StoreError> {
        if self.archive.is_none() {
            return Ok(PlayedOutcome::NotFound);
        }
        let Some(mut msg) = self.archived_message(msg_id).await? else {
            return Ok(PlayedOutcome::NotFound);
        };
        let allowed = match &msg.group {
            None => msg.to == user,
            Some(g) => {
                msg.from != user
                    && self
                        .group(g)
                        .await?
                        .is_some_and(|g| g.members.iter().any(|m| m == user))
            }
        };
        if !allowed {
            return Ok(PlayedOutcome::Forbidden);
        }
        if msg.kind != Kind::Voice {
            return Ok(PlayedOutcome::NotVoice);
        }
        self.sql()?.mark_played(msg_id).await?;
        msg.played = Some(true);
        Ok(PlayedOutcome::Played(Box::new(msg)))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.registry.ping().await?)
    }

    async fn put_token(&self, token_hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        let key = self.keys.token(token_hash);
        let _: () = ::redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("user", record.user.as_str()),
                    ("platform", record.platform.as_str()),
                    ("expires_at", &record.expires_at.to_string()),
                ],
            )
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(record.expires_at)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_token(
        &self,
        token_hash: &str,
        now_ms: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let f: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.token(token_hash))
            .await
            .map_err(unavailable)?;
        let record = token_from_fields(&f)?;
        Ok(record.filter(|t| t.expires_at > now_ms))
    }

    async fn delete_token(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let key = self.keys.token(token_hash);
        let (f,): (HashMap<String, String>,) = ::redis::pipe()
            .atomic()
            .hgetall(&key)
            .del(&key)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        token_from_fields(&f)
    }

    async fn put_jwt_token(
        &self,
        token_hash: &str,
        record: &TokenRecord,
        jti: bool,
    ) -> Result<bool, StoreError> {
        let put: i64 = self
            .scripts
            .jwt_put
            .key(self.keys.token(token_hash))
            .key(self.keys.revoked_jti(token_hash))
            .arg(&record.user)
            .arg(&record.platform)
            .arg(record.expires_at)
            .arg(if jti { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(put == 1)
    }

    async fn revoke_jti(
        &self,
        token_hash: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let f: HashMap<String, String> = self
            .scripts
            .jwt_revoke
            .key(self.keys.token(token_hash))
            .key(self.keys.revoked_jti(token_hash))
            .arg(until_ms)
            .arg(now_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        token_from_fields(&f)
    }

    async fn send(
        &self,
        new: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<Stored, StoreError> {
        let k = &self.keys;
        let media = match &new.media {
            Some(m) => serde_json::to_string(m).map_err(corrupt)?,
            None => String::new(),
        };
        let cutoff = new.ts.saturating_sub(self.retention.max_age_ms);
        let (bucket, before, expires) = client_id_buckets(new.ts, self.client_id_ttl_ms);
        let reply: Value = self
            .scripts
            .send
            .key(k.client_ids(&new.from, bucket))
            .key(k.conv(&new.conv))
            .key(k.msg(&new.id))
            .key(k.inbox(&new.from))
            .key(k.inbox_pts(&new.from))
            .key(k.inbox(&new.to))
            .key(k.inbox_pts(&new.to))
            .key(k.unread(&new.to))
            .key(k.presence(&new.from))
            .key(k.presence(&new.to))
            .key(k.conv_seq(&new.conv))
            .key(k.archive_stream())
            .key(k.convs(&new.from))
            .key(k.convs(&new.to))
            .key(k.push_stream())
            .key(k.client_ids(&new.from, before))
            .arg(&new.id)
            .arg(&new.conv)
            .arg(&new.from)
            .arg(&new.to)
            .arg(new.kind.as_str())
            .arg(&new.body)
            .arg(media)
            .arg(new.ts)
            .arg(expires)
            .arg(self.retention.max_entries)
            .arg(cutoff)
            .arg(k.msg_prefix())
            .arg(if new.kind == Kind::Voice { "1" } else { "0" })
            .arg(if routes { "1" } else { "0" })
            .arg(if self.archive.is_some() { "1" } else { "0" })
            .arg(self.archive.as_ref().map_or(0, |f| f.max_lag))
            .arg(self.push_max)
            .arg(client_id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut parts = as_array(reply)?.into_iter();
        let tag = parts.next().ok_or_else(|| corrupt("empty send reply"))?;
        let wrong_length = || corrupt("send reply has the wrong length");
        let tag = as_i64(&tag)?;
        if tag == -1 {
            let lag = parts.next().map(|v| as_u64(&v)).transpose()?.unwrap_or(0);
            return Err(StoreError::Unavailable(format!(
                "the archive is {lag} messages behind; sends wait for it to catch up"
            )));
        }
        let duplicate = tag == 1;
        let first = if duplicate {
            let stored = parts.next().ok_or_else(wrong_length)?;
            match maybe_message(stored)? {
                Some(m) => Some(m),
                // It left Redis for the archive since.
                None => {
                    let id = self.client_id_message(&new.from, client_id, new.ts).await?;
                    Some(
                        self.archived_message(&id)
                            .await?
                            .ok_or_else(|| corrupt(format!("message {id} is nowhere")))?,
                    )
                }
            }
        } else {
            None
        };
        let mut number = || {
            parts
                .next()
                .ok_or_else(wrong_length)
                .and_then(|v| as_u64(&v))
        };
        let seq = if duplicate { 0 } else { number()? };
        let (sender_pts, receiver_pts, push_dropped) = (number()?, number()?, number()?);
        let msg = match first {
            Some(m) => m,
            None => new.into_message(seq),
        };
        let self_message = msg.from == msg.to;
        let routes = if routes {
            let mut nodes = || {
                parts
                    .next()
                    .ok_or_else(wrong_length)
                    .and_then(nodes_from_value)
            };
            let (from, to) = (nodes()?, nodes()?);
            let mut r = vec![(msg.from.clone(), from)];
            if !self_message {
                r.push((msg.to.clone(), to));
            }
            Some(r)
        } else {
            None
        };
        Ok(Stored {
            msg,
            sender_pts,
            receiver_pts: (!self_message && receiver_pts > 0).then_some(receiver_pts),
            duplicate,
            routes,
            push_dropped,
        })
    }

    async fn join(
        &self,
        user: &str,
        port: u16,
        instance: &str,
        token_hash: &str,
    ) -> Result<Option<u64>, StoreError> {
        let pts: i64 = self
            .scripts
            .join
            .key(self.keys.presence(user))
            .key(self.keys.node_users(port))
            .key(self.keys.inbox_pts(user))
            .key(self.keys.token(token_hash))
            .arg(port)
            .arg(instance)
            .arg(user)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(pts).ok())
    }

    async fn leave(&self, user: &str, port: u16, instance: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .leave
            .key(self.keys.presence(user))
            .key(self.keys.node_users(port))
            .arg(port)
            .arg(instance)
            .arg(user)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn presence(&self, users: &[&str]) -> Result<Vec<Nodes>, StoreError> {
        let mut pipe = ::redis::pipe();
        for u in users {
            pipe.hgetall(self.keys.presence(u));
        }
        let maps: Vec<BTreeMap<u16, String>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(maps.into_iter().map(|m| m.into_iter().collect()).collect())
    }

    async fn clear_presence(
        &self,
        port: u16,
        instance: &str,
        keep: bool,
    ) -> Result<u64, StoreError> {
        Ok(self.registry.clear_presence(port, instance, keep).await?)
    }

    async fn sync(&self, user: &str, after: u64, limit: u64) -> Result<SyncPage, StoreError> {
        let reply: Value = self
            .scripts
            .sync
            .key(self.keys.inbox(user))
            .key(self.keys.inbox_pts(user))
            .arg(after)
            .arg(limit)
            .arg(self.keys.msg_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut parts = as_array(reply)?.into_iter();
        let mut number = || {
            parts
                .next()
                .ok_or_else(|| corrupt("short sync reply"))
                .and_then(|v| as_u64(&v))
        };
        let (pts, first) = (number()?, number()?);
        let mut entries = Vec::new();
        // Entries whose message left Redis: filled from the archive below.
        let mut gone: Vec<(usize, InboxRef)> = Vec::new();
        while let (Some(p), Some(e), Some(m)) = (parts.next(), parts.next(), parts.next()) {
            let pts = as_u64(&p)?;
            let entry = as_string(&e)?;
            if let Some(event) = inbox_event(&entry) {
                entries.push(Some(InboxEntry {
                    pts,
                    msg: None,
                    event: Some(event),
                }));
                continue;
            }
            match maybe_message(m)? {
                Some(msg) => entries.push(Some(InboxEntry::message(pts, msg))),
                None => {
                    gone.push((entries.len(), InboxRef::parse(&entry, pts)));
                    entries.push(None);
                }
            }
        }
        if !gone.is_empty() {
            self.fill_from_archive(&mut entries, gone).await?;
        }
        let mut entries: Vec<InboxEntry> = entries.into_iter().flatten().collect();
        let more = entries.len() as u64 > limit;
        entries.truncate(limit as usize);
        Ok(SyncPage {
            entries,
            more,
            pts,
            trimmed_to: (after.saturating_add(1) < first).then_some(first),
        })
    }

    async fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: u64,
    ) -> Result<HistoryPage, StoreError> {
        let upper = before.map_or_else(String::new, |b| b.to_string());
        let reply: Value = self
            .scripts
            .history
            .key(self.keys.conv(conv))
            .key(self.keys.conv_seq(conv))
            .arg(upper)
            .arg(limit)
            .arg(self.keys.msg_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut parts = as_array(reply)?.into_iter();
        let mut number = || {
            parts
                .next()
                .ok_or_else(|| corrupt("short history reply"))
                .and_then(|v| as_i64(&v))
        };
        let (last, first, lowest) = (number()?, number()?, number()?);
        let hot = parts
            .map(message_from_value)
            .collect::<Result<Vec<_>, _>>()?;
        let top = before.map_or(last, |b| {
            last.min(b.saturating_sub(1).min(i64::MAX as u64) as i64)
        });
        if top < 1 {
            return Ok(HistoryPage {
                messages: Vec::new(),
                more: false,
            });
        }
        // Seqs lowest..top; those below `first` left Redis: they are all in
        // the archive (a message leaves Redis only once archived), and
        // nothing below `first` changes, so the two reads join with no gap.
        let mut messages = if lowest < first {
            let upto = first.min(top + 1) as u64;
            self.sql()?.range(conv, lowest as u64, upto).await?
        } else {
            Vec::new()
        };
        messages.extend(hot);
        Ok(HistoryPage {
            messages,
            more: lowest > 1,
        })
    }

    async fn unread(&self, user: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let counts: BTreeMap<String, u64> = self
            .conn()
            .hgetall(self.keys.unread(user))
            .await
            .map_err(unavailable)?;
        Ok(counts.into_iter().filter(|(_, n)| *n > 0).collect())
    }

    async fn mark_read(
        &self,
        user: &str,
        peer: &str,
        conv: &str,
        seq: u64,
    ) -> Result<ReadOutcome, StoreError> {
        let (marked, last): (i64, u64) = self
            .scripts
            .read
            .key(self.keys.conv(conv))
            .key(self.keys.read_marks(user))
            .key(self.keys.unread(user))
            .key(self.keys.conv_seq(conv))
            .arg(conv)
            .arg(seq)
            .arg(peer)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(if marked == 1 {
            ReadOutcome::Marked
        } else {
            ReadOutcome::BeyondEnd { last }
        })
    }

    async fn mark_played(&self, user: &str, msg_id: &str) -> Result<PlayedOutcome, StoreError> {
        let reply: Value = self
            .scripts
            .played
            .key(self.keys.msg(msg_id))
            .key(self.keys.archive_stream())
            .arg(user)
            .arg(msg_id)
            .arg(self.keys.prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut parts = as_array(reply)?.into_iter();
        let tag = as_string(&parts.next().ok_or_else(|| corrupt("empty played reply"))?)?;
        Ok(match tag.as_str() {
            "played" => {
                let m = parts
                    .next()
                    .ok_or_else(|| corrupt("played without message"))?;
                PlayedOutcome::Played(Box::new(message_from_value(m)?))
            }
            "archived" => self.mark_played_archived(user, msg_id).await?,
            "not_found" => PlayedOutcome::NotFound,
            "forbidden" => PlayedOutcome::Forbidden,
            "not_voice" => PlayedOutcome::NotVoice,
            other => return Err(corrupt(format!("unknown played outcome {other}"))),
        })
    }

    async fn group_change(
        &self,
        change: GroupChange,
        routes: bool,
    ) -> Result<GroupOutcome<GroupChanged>, StoreError> {
        self.change_group(change, routes).await
    }

    async fn group_send(
        &self,
        msg: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<GroupOutcome<GroupStored>, StoreError> {
        self.send_group(msg, client_id, routes).await
    }

    async fn group(&self, id: &str) -> Result<Option<GroupView>, StoreError> {
        self.group_view(id).await
    }

    async fn conversations(
        &self,
        user: &str,
        before: u64,
        limit: u64,
    ) -> Result<ConversationPage, StoreError> {
        self.list_conversations(user, before, limit).await
    }

    async fn recall(
        &self,
        user: &str,
        msg_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<RecallOutcome, StoreError> {
        self.recall_message(user, msg_id, now_ms, window_ms).await
    }

    async fn register_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        Ok(self.registry.register_node(node).await?)
    }

    async fn deregister_node(&self, port: u16, instance: &str) -> Result<bool, StoreError> {
        Ok(self.registry.deregister_node(port, instance).await?)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.registry.nodes().await?)
    }
}
