//! The in-memory store: the embedded default for a single node with nothing
//! installed. Same rules as Redis; one mutex makes every operation atomic.
//!
//! Without an archive it keeps every message, and loses everything on
//! restart: meant for development and single-node trials. With one
//! (`CHAT_ARCHIVE_URL`, typically `sqlite://`), every send is written to SQL
//! before it is acknowledged, memory keeps only each conversation's hot
//! window, and history, `sync` and `played` read through to SQL, so history
//! survives a restart (tokens, inboxes and unread counts do not).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::archive::Archive;

mod groups;
mod push;

/// All state of one in-memory chat.
pub struct MemoryStore {
    state: Mutex<State>,
    retention: Retention,
    client_id_ttl_ms: u64,
    archive: Option<WriteThrough>,
    /// Group changes, group sends and recalls one at a time: each reads
    /// the state, may await (the archive), then writes (memory/groups.rs).
    group_ops: tokio::sync::Mutex<()>,
    /// Wakes the pusher when a push is queued.
    push_ready: tokio::sync::Notify,
}

/// The archive of an in-memory store, written before a send is answered.
struct WriteThrough {
    sql: Arc<Archive>,
    hot_messages: u64,
    hot_ms: u64,
    /// Sends one at a time: `seq` is assigned, written to SQL, then
    /// applied, and nothing may come between.
    sends: tokio::sync::Mutex<()>,
}

/// The messages of one conversation held in memory, oldest first: the one
/// at index `i` has `seq` = `base + i + 1` (`base` counts those that left
/// for the archive, or were there before this process started).
#[derive(Default)]
struct Conv {
    base: u64,
    ids: VecDeque<String>,
}

impl Conv {
    fn last(&self) -> u64 {
        self.base + self.ids.len() as u64
    }
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, TokenRecord>,
    /// Revoked JWT jtis (by the hash their sessions' tokens are recorded
    /// under) -> until when they are refused (ms).
    revoked_jtis: HashMap<String, u64>,
    /// Token count at which a JWT connect next sweeps expired tokens (each
    /// JWT adds a record; amortised, so memory stays bounded by live ones).
    token_sweep_at: usize,
    // The maps that grow with every message are B-trees: they grow a node
    // at a time, where a hash map stops every send to rehash and copy all
    // it holds (pauses of hundreds of milliseconds at a few 100k messages).
    messages: BTreeMap<String, Message>,
    /// Message ids by conversation.
    convs: BTreeMap<String, Conv>,
    inboxes: HashMap<String, Inbox>,
    /// user -> peer -> count
    unread: HashMap<String, HashMap<String, u64>>,
    /// user -> conv -> read-up-to seq
    read: HashMap<String, HashMap<String, u64>>,
    /// (user, client id) -> the message stored for it first
    client_ids: BTreeMap<(String, String), FirstSend>,
    /// expiry time (ms) -> keys of `client_ids` expiring then
    client_id_expiry: BTreeMap<u64, Vec<(String, String)>>,
    nodes: BTreeMap<u16, NodeRecord>,
    /// user -> port -> instance
    presence: HashMap<String, BTreeMap<u16, String>>,
    /// group id -> group
    groups: HashMap<String, GroupState>,
    /// The offline push feed, with a webhook (memory/push.rs).
    push: Option<push::PushQueue>,
    /// user -> conversation -> last activity (ms): the conversation list
    conv_lists: HashMap<String, HashMap<String, u64>>,
}

/// One group.
#[derive(Debug, Clone)]
struct GroupState {
    name: String,
    owner: String,
    created: u64,
    /// Join order, earliest first.
    members: Vec<String>,
    /// Former members -> `seq` of the message that removed them (the last
    /// one they got).
    left: HashMap<String, u64>,
}

impl GroupState {
    fn view(&self, id: &str) -> GroupView {
        GroupView {
            id: id.to_owned(),
            name: self.name.clone(),
            owner: self.owner.clone(),
            members: self.members.clone(),
            created: self.created,
        }
    }
    fn is_member(&self, user: &str) -> bool {
        self.members.iter().any(|m| m == user)
    }
}

/// What a client id was first stored as.
#[derive(Debug, Clone)]
struct FirstSend {
    id: String,
    sender_pts: u64,
    receiver_pts: Option<u64>,
}

#[derive(Default)]
struct Inbox {
    pts: u64,
    /// Ascending `pts`.
    entries: VecDeque<InboxItem>,
}

/// One inbox entry: enough to apply retention and to find the message in
/// the archive once it has left memory.
struct InboxItem {
    pts: u64,
    id: String,
    conv: String,
    seq: u64,
    ts: u64,
    /// An `event` entry about message `id` rather than the message.
    event: Option<InboxEvent>,
}

impl MemoryStore {
    pub fn new(retention: Retention) -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            retention,
            client_id_ttl_ms: CLIENT_ID_TTL_MS,
            archive: None,
            group_ops: tokio::sync::Mutex::new(()),
            push_ready: tokio::sync::Notify::new(),
        }
    }

    /// Feeds the offline push webhook: a send queues a push for each
    /// receiver with no live session, while the queue holds fewer than
    /// `max_entries` and `max_bytes`; the store is then the pusher's feed.
    pub fn with_push(self, max_entries: usize, max_bytes: usize) -> Self {
        self.lock().push = Some(push::PushQueue::new(max_entries, max_bytes));
        self
    }

    /// Writes every message to `sql` before answering, and keeps in memory
    /// only each conversation's newest `hot_messages` and those younger
    /// than `hot`.
    pub fn with_archive(mut self, sql: Arc<Archive>, hot_messages: u64, hot: Duration) -> Self {
        self.archive = Some(WriteThrough {
            sql,
            hot_messages,
            hot_ms: hot.as_millis() as u64,
            sends: tokio::sync::Mutex::new(()),
        });
        self
    }

    /// How long a client message id is remembered.
    pub fn with_client_id_ttl(mut self, ttl: Duration) -> Self {
        self.client_id_ttl_ms = ttl.as_millis().max(1) as u64;
        self
    }

    /// The archive, or the error for a message that is not in memory.
    fn sql(&self) -> Result<&Archive, StoreError> {
        self.archive
            .as_ref()
            .map(|a| a.sql.as_ref())
            .ok_or_else(|| StoreError::Corrupt("a message is missing from memory".into()))
    }

    /// The last `seq` of `conv`: from memory, else from the archive (a
    /// conversation of an earlier run), else 0.
    async fn last_seq(&self, conv: &str) -> Result<u64, StoreError> {
        if let Some(c) = self.lock().convs.get(conv) {
            return Ok(c.last());
        }
        match &self.archive {
            Some(a) => Ok(a.sql.last_seq(conv).await?),
            None => Ok(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change
        // that matters more than stopping the whole chat: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The nodes holding sessions of `user`.
    fn nodes_of(&self, user: &str) -> Nodes {
        self.presence
            .get(user)
            .map(|p| p.iter().map(|(port, i)| (*port, i.clone())).collect())
            .unwrap_or_default()
    }

    fn append_inbox(
        &mut self,
        user: &str,
        msg: &Message,
        now_ms: u64,
        retention: Retention,
    ) -> u64 {
        self.append_item(user, msg, None, now_ms, retention)
    }

    /// Appends a message (or, with `event`, an event about it) to an inbox.
    fn append_item(
        &mut self,
        user: &str,
        msg: &Message,
        event: Option<InboxEvent>,
        now_ms: u64,
        retention: Retention,
    ) -> u64 {
        let inbox = self.inboxes.entry(user.to_owned()).or_default();
        inbox.pts += 1;
        inbox.entries.push_back(InboxItem {
            pts: inbox.pts,
            id: msg.id.clone(),
            conv: msg.conv.clone(),
            seq: msg.seq,
            ts: if event.is_some() { now_ms } else { msg.ts },
            event,
        });
        let cutoff = now_ms.saturating_sub(retention.max_age_ms);
        while inbox.entries.len() as u64 > retention.max_entries {
            if inbox.entries.front().is_none_or(|e| e.ts >= cutoff) {
                break;
            }
            inbox.entries.pop_front();
        }
        inbox.pts
    }

    /// Drops archived messages of `conv` beyond the hot window.
    fn trim(&mut self, conv: &str, hot_messages: u64, cutoff_ms: u64) {
        let Some(c) = self.convs.get_mut(conv) else {
            return;
        };
        while c.ids.len() as u64 > hot_messages {
            let Some(id) = c.ids.front() else { break };
            if self.messages.get(id).is_some_and(|m| m.ts >= cutoff_ms) {
                break;
            }
            if let Some(id) = c.ids.pop_front() {
                self.messages.remove(&id);
                c.base += 1;
            }
        }
    }

    /// Where the sessions of a message's users are.
    fn routes_of(&self, msg: &Message) -> Routes {
        let mut users = vec![msg.from.as_str()];
        if msg.to != msg.from {
            users.push(&msg.to);
        }
        users
            .into_iter()
            .map(|u| (u.to_owned(), self.nodes_of(u)))
            .collect()
    }

    /// Marks `conv` active at `ts` in `user`'s conversation list.
    fn touch_conv(&mut self, user: &str, conv: &str, ts: u64) {
        let t = self
            .conv_lists
            .entry(user.to_owned())
            .or_default()
            .entry(conv.to_owned())
            .or_default();
        *t = (*t).max(ts);
    }

    /// The message of `conv` at `seq`, if memory holds it.
    fn at_seq(&self, conv: &str, seq: u64) -> Option<&Message> {
        let c = self.convs.get(conv)?;
        let i = seq.checked_sub(c.base + 1)?;
        self.messages.get(c.ids.get(i as usize)?)
    }

    fn expire_client_ids(&mut self, now_ms: u64) {
        while let Some(entry) = self.client_id_expiry.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            for key in entry.remove() {
                self.client_ids.remove(&key);
            }
        }
    }
}

impl State {
    /// The answer to a send whose client id was seen before, if it was.
    /// `Err(Corrupt)` when the first message is no longer in memory.
    fn duplicate(
        &mut self,
        from: &str,
        client_id: &str,
        now: u64,
        routes: bool,
    ) -> Option<Result<Stored, StoreError>> {
        self.expire_client_ids(now);
        let first = self
            .client_ids
            .get(&(from.to_owned(), client_id.to_owned()))?;
        let Some(msg) = self.messages.get(&first.id).cloned() else {
            return Some(Err(StoreError::Corrupt(format!(
                "client id points at missing message {}",
                first.id
            ))));
        };
        let (sender_pts, receiver_pts) = (first.sender_pts, first.receiver_pts);
        let routes = routes.then(|| self.routes_of(&msg));
        Some(Ok(Stored {
            msg,
            sender_pts,
            receiver_pts,
            duplicate: true,
            routes,
            push_dropped: 0,
        }))
    }
}

impl MemoryStore {
    /// Stores `msg` (its `seq` assigned) in memory: conversation, inboxes,
    /// unread count, client id.
    fn apply(&self, st: &mut State, msg: Message, client_id: &str, routes: bool) -> Stored {
        let now = msg.ts;
        st.convs
            .entry(msg.conv.clone())
            .or_default()
            .ids
            .push_back(msg.id.clone());
        st.messages.insert(msg.id.clone(), msg.clone());
        let sender_pts = st.append_inbox(&msg.from, &msg, now, self.retention);
        for u in [&msg.from, &msg.to] {
            st.touch_conv(u, &msg.conv, now);
        }
        let receiver_pts = if msg.to != msg.from {
            let pts = st.append_inbox(&msg.to, &msg, now, self.retention);
            *st.unread
                .entry(msg.to.clone())
                .or_default()
                .entry(msg.from.clone())
                .or_default() += 1;
            Some(pts)
        } else {
            None
        };
        let key = (msg.from.clone(), client_id.to_owned());
        st.client_ids.insert(
            key.clone(),
            FirstSend {
                id: msg.id.clone(),
                sender_pts,
                receiver_pts,
            },
        );
        st.client_id_expiry
            .entry(now + self.client_id_ttl_ms)
            .or_default()
            .push(key);
        let routes = routes.then(|| st.routes_of(&msg));
        let push_dropped = self.queue_pushes(st, std::iter::once(&msg.to), &msg);
        Stored {
            msg,
            sender_pts,
            receiver_pts,
            duplicate: false,
            routes,
            push_dropped,
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_token(&self, token_hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        let mut st = self.lock();
        // Issuing is rare: a good moment to forget expired tokens.
        let now = crate::ids::now_ms();
        st.tokens.retain(|_, t| t.expires_at > now);
        st.tokens.insert(token_hash.to_owned(), record.clone());
        Ok(())
    }

    async fn get_token(
        &self,
        token_hash: &str,
        now_ms: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .lock()
            .tokens
            .get(token_hash)
            .filter(|t| t.expires_at > now_ms)
            .cloned())
    }

    async fn delete_token(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.lock().tokens.remove(token_hash))
    }

    async fn put_jwt_token(
        &self,
        token_hash: &str,
        record: &TokenRecord,
        jti: bool,
    ) -> Result<bool, StoreError> {
        let now = crate::ids::now_ms();
        let mut st = self.lock();
        if jti && st.revoked_jtis.get(token_hash).is_some_and(|&t| t > now) {
            return Ok(false);
        }
        if st.tokens.len() >= st.token_sweep_at {
            st.tokens.retain(|_, t| t.expires_at > now);
            st.token_sweep_at = (st.tokens.len() * 2).max(1024);
        }
        st.tokens.insert(token_hash.to_owned(), record.clone());
        Ok(true)
    }

    async fn revoke_jti(
        &self,
        token_hash: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let mut st = self.lock();
        st.revoked_jtis.retain(|_, t| *t > now_ms);
        let record = st.tokens.remove(token_hash);
        let until = record.as_ref().map_or(until_ms, |r| r.expires_at);
        if until > now_ms {
            st.revoked_jtis.insert(token_hash.to_owned(), until);
        }
        Ok(record)
    }

    async fn send(
        &self,
        new: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<Stored, StoreError> {
        let Some(a) = &self.archive else {
            let mut st = self.lock();
            if let Some(dup) = st.duplicate(&new.from, client_id, new.ts, routes) {
                return dup;
            }
            let seq = st.convs.get(&new.conv).map_or(0, Conv::last) + 1;
            return Ok(self.apply(&mut st, new.into_message(seq), client_id, routes));
        };
        let _one_at_a_time = a.sends.lock().await;
        let dup = self.lock().duplicate(&new.from, client_id, new.ts, routes);
        if let Some(dup) = dup {
            return match dup {
                Err(StoreError::Corrupt(_)) => {
                    // The first message left memory for the archive.
                    let key = (new.from.clone(), client_id.to_owned());
                    let first = self.lock().client_ids.get(&key).cloned();
                    let first =
                        first.ok_or_else(|| StoreError::Corrupt("client id vanished".into()))?;
                    let msg = a.sql.by_ids(&[first.id.as_str()]).await?.into_iter().next();
                    let msg = msg.ok_or_else(|| {
                        StoreError::Corrupt(format!("message {} is nowhere", first.id))
                    })?;
                    let routes = routes.then(|| self.lock().routes_of(&msg));
                    Ok(Stored {
                        msg,
                        sender_pts: first.sender_pts,
                        receiver_pts: first.receiver_pts,
                        duplicate: true,
                        routes,
                        push_dropped: 0,
                    })
                }
                other => other,
            };
        }
        let seq = self.last_seq(&new.conv).await? + 1;
        let msg = new.into_message(seq);
        // Durable first: a send SQL refuses changes nothing.
        a.sql.insert(std::slice::from_ref(&msg)).await?;
        let mut st = self.lock();
        let conv = st.convs.entry(msg.conv.clone()).or_default();
        if conv.ids.is_empty() {
            conv.base = seq - 1;
        }
        let conv_id = msg.conv.clone();
        let stored = self.apply(&mut st, msg, client_id, routes);
        let cutoff = stored.msg.ts.saturating_sub(a.hot_ms);
        st.trim(&conv_id, a.hot_messages, cutoff);
        Ok(stored)
    }

    async fn join(
        &self,
        user: &str,
        port: u16,
        instance: &str,
        token_hash: &str,
    ) -> Result<Option<u64>, StoreError> {
        let mut st = self.lock();
        let now = crate::ids::now_ms();
        if st
            .tokens
            .get(token_hash)
            .is_none_or(|t| t.expires_at <= now)
        {
            return Ok(None);
        }
        st.presence
            .entry(user.to_owned())
            .or_default()
            .insert(port, instance.to_owned());
        Ok(Some(st.inboxes.get(user).map_or(0, |i| i.pts)))
    }

    async fn leave(&self, user: &str, port: u16, instance: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        if let Some(p) = st.presence.get_mut(user) {
            if p.get(&port).is_some_and(|i| i == instance) {
                p.remove(&port);
            }
            if p.is_empty() {
                st.presence.remove(user);
            }
        }
        Ok(())
    }

    async fn presence(&self, users: &[&str]) -> Result<Vec<Nodes>, StoreError> {
        let st = self.lock();
        Ok(users.iter().map(|u| st.nodes_of(u)).collect())
    }

    async fn clear_presence(
        &self,
        port: u16,
        instance: &str,
        keep: bool,
    ) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let mut removed = 0;
        st.presence.retain(|_, p| {
            if p.get(&port)
                .is_some_and(|owner| (owner == instance) != keep)
            {
                p.remove(&port);
                removed += 1;
            }
            !p.is_empty()
        });
        Ok(removed)
    }

    async fn sync(&self, user: &str, after: u64, limit: u64) -> Result<SyncPage, StoreError> {
        let (mut entries, gone, more, pts, first) = {
            let st = self.lock();
            let Some(inbox) = st.inboxes.get(user) else {
                return Ok(SyncPage {
                    entries: vec![],
                    more: false,
                    pts: 0,
                    trimmed_to: None,
                });
            };
            let start = inbox.entries.partition_point(|e| e.pts <= after);
            let mut entries = Vec::new();
            // Entries whose message left memory for the archive.
            let mut gone = Vec::new();
            for e in inbox.entries.iter().skip(start).take(limit as usize) {
                if let Some(ev) = &e.event {
                    entries.push(Some(InboxEntry {
                        pts: e.pts,
                        msg: None,
                        event: Some(ev.clone()),
                    }));
                    continue;
                }
                match st.messages.get(&e.id) {
                    Some(m) => entries.push(Some(InboxEntry::message(e.pts, m.clone()))),
                    None => {
                        gone.push((entries.len(), e.pts, e.id.clone(), (e.conv.clone(), e.seq)));
                        entries.push(None);
                    }
                }
            }
            let more = inbox.entries.len() - start > entries.len();
            let first = inbox.entries.front().map_or(inbox.pts + 1, |e| e.pts);
            (entries, gone, more, inbox.pts, first)
        };
        if !gone.is_empty() {
            let keys: Vec<(String, u64)> = gone.iter().map(|g| g.3.clone()).collect();
            let found: HashMap<String, Message> = self
                .sql()?
                .by_keys(&keys)
                .await?
                .into_iter()
                .map(|m| (m.id.clone(), m))
                .collect();
            for (slot, pts, id, _) in gone {
                let msg = found.get(&id).cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!("inbox points at missing message {id}"))
                })?;
                entries[slot] = Some(InboxEntry::message(pts, msg));
            }
        }
        Ok(SyncPage {
            entries: entries.into_iter().flatten().collect(),
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
        let last = self.last_seq(conv).await?;
        let top = before.map_or(last, |b| last.min(b.saturating_sub(1)));
        if top < 1 {
            return Ok(HistoryPage {
                messages: vec![],
                more: false,
            });
        }
        let lowest = top.saturating_sub(limit) + 1;
        // The part memory holds (seq >= first), copied under the lock.
        let (first, hot) = {
            let st = self.lock();
            match st.convs.get(conv) {
                Some(c) => {
                    let first = c.base + 1;
                    let from = lowest.max(first);
                    let mut hot = Vec::new();
                    for s in from..=top.min(c.last()) {
                        let id = &c.ids[(s - first) as usize];
                        hot.push(st.messages.get(id).cloned().ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "conversation points at missing message {id}"
                            ))
                        })?);
                    }
                    (first, hot)
                }
                None => (top + 1, Vec::new()),
            }
        };
        // Below `first`: archived before it entered memory, and unchanging.
        let mut messages = if lowest < first {
            let upto = first.min(top + 1);
            self.sql()?.range(conv, lowest, upto).await?
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
        let st = self.lock();
        Ok(st
            .unread
            .get(user)
            .map(|m| {
                m.iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(p, n)| (p.clone(), *n))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn mark_read(
        &self,
        user: &str,
        peer: &str,
        conv: &str,
        seq: u64,
    ) -> Result<ReadOutcome, StoreError> {
        let last = self.last_seq(conv).await?;
        if seq > last {
            return Ok(ReadOutcome::BeyondEnd { last });
        }
        let mut st = self.lock();
        let mark = st
            .read
            .entry(user.to_owned())
            .or_default()
            .entry(conv.to_owned())
            .or_default();
        *mark = (*mark).max(seq);
        if let Some(m) = st.unread.get_mut(user) {
            m.remove(peer);
        }
        Ok(ReadOutcome::Marked)
    }

    async fn mark_played(&self, user: &str, msg_id: &str) -> Result<PlayedOutcome, StoreError> {
        let held = self.lock().messages.get(msg_id).cloned();
        let mut msg = match (held, &self.archive) {
            (Some(m), _) => m,
            (None, None) => return Ok(PlayedOutcome::NotFound),
            (None, Some(a)) => match a.sql.by_ids(&[msg_id]).await?.into_iter().next() {
                Some(m) => m,
                None => return Ok(PlayedOutcome::NotFound),
            },
        };
        let allowed = match &msg.group {
            None => msg.to == user,
            Some(g) => {
                msg.from != user && self.lock().groups.get(g).is_some_and(|g| g.is_member(user))
            }
        };
        if !allowed {
            return Ok(PlayedOutcome::Forbidden);
        }
        if msg.kind != Kind::Voice {
            return Ok(PlayedOutcome::NotVoice);
        }
        // SQL first: a change SQL refuses is not made at all.
        if let Some(a) = &self.archive {
            a.sql.mark_played(msg_id).await?;
        }
        if let Some(m) = self.lock().messages.get_mut(msg_id) {
            m.played = Some(true);
        }
        msg.played = Some(true);
        Ok(PlayedOutcome::Played(Box::new(msg)))
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
        Ok(self.group_view(id))
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
        self.lock().nodes.insert(node.port, node.clone());
        Ok(())
    }

    async fn deregister_node(&self, port: u16, instance: &str) -> Result<bool, StoreError> {
        let mut st = self.lock();
        if st.nodes.get(&port).is_some_and(|n| n.instance == instance) {
            st.nodes.remove(&port);
            return Ok(true);
        }
        Ok(false)
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.lock().nodes.values().cloned().collect())
    }
}
