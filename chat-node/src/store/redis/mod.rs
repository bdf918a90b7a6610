//! The Redis store (production). Every write that must be atomic is one Lua
//! script, so one round trip either changes everything or nothing. The
//! connection manager reconnects by itself when Redis comes back.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script, Value};
use async_trait::async_trait;
use parley_cluster::{Keys, Registry};

mod decode;

use self::decode::{
    as_array, as_i64, as_string, as_u64, corrupt, message_from_value, nodes_from_value,
    token_from_fields,
};
use super::*;

/// The Lua scripts, loaded once per process and cached by Redis by SHA.
struct Scripts {
    send: Script,
    sync: Script,
    history: Script,
    read: Script,
    played: Script,
    join: Script,
    leave: Script,
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
    scripts: Scripts,
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
            scripts: Scripts::new(),
        })
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
        let reply: Value = self
            .scripts
            .send
            .key(k.client_id(&new.from, client_id))
            .key(k.conv(&new.conv))
            .key(k.msg(&new.id))
            .key(k.inbox(&new.from))
            .key(k.inbox_pts(&new.from))
            .key(k.inbox(&new.to))
            .key(k.inbox_pts(&new.to))
            .key(k.unread(&new.to))
            .key(k.presence(&new.from))
            .key(k.presence(&new.to))
            .arg(&new.id)
            .arg(&new.conv)
            .arg(&new.from)
            .arg(&new.to)
            .arg(new.kind.as_str())
            .arg(&new.body)
            .arg(media)
            .arg(new.ts)
            .arg(CLIENT_ID_TTL_MS)
            .arg(self.retention.max_entries)
            .arg(cutoff)
            .arg(k.msg_prefix())
            .arg(if new.kind == Kind::Voice { "1" } else { "0" })
            .arg(if routes { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut parts = as_array(reply)?.into_iter();
        let tag = parts.next().ok_or_else(|| corrupt("empty send reply"))?;
        let duplicate = as_i64(&tag)? == 1;
        let wrong_length = || corrupt("send reply has the wrong length");
        let first = if duplicate {
            Some(message_from_value(parts.next().ok_or_else(wrong_length)?)?)
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
        let (sender_pts, receiver_pts) = (number()?, number()?);
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
        let pts = as_u64(&parts.next().ok_or_else(|| corrupt("empty sync reply"))?)?;
        let mut entries = Vec::new();
        while let (Some(p), Some(m)) = (parts.next(), parts.next()) {
            entries.push(InboxEntry {
                pts: as_u64(&p)?,
                msg: message_from_value(m)?,
            });
        }
        let more = entries.len() as u64 > limit;
        entries.truncate(limit as usize);
        Ok(SyncPage { entries, more, pts })
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
            .arg(upper)
            .arg(limit)
            .arg(self.keys.msg_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut messages = as_array(reply)?
            .into_iter()
            .map(message_from_value)
            .collect::<Result<Vec<_>, _>>()?;
        // Oldest first, with one more than asked for when older ones exist.
        let extra = messages.len().saturating_sub(limit as usize);
        messages.drain(..extra);
        Ok(HistoryPage {
            messages,
            more: extra > 0,
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
            .arg(user)
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
            "not_found" => PlayedOutcome::NotFound,
            "forbidden" => PlayedOutcome::Forbidden,
            "not_voice" => PlayedOutcome::NotVoice,
            other => return Err(corrupt(format!("unknown played outcome {other}"))),
        })
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
