//! The in-memory store: the embedded default for a single node with nothing
//! installed. Same rules as Redis; one mutex makes every operation atomic.
//! It keeps every message (as Redis keeps history): meant for development
//! and single-node trials, not for months of traffic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

/// All state of one in-memory chat.
pub struct MemoryStore {
    state: Mutex<State>,
    retention: Retention,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, TokenRecord>,
    // The maps that grow with every message are B-trees: they grow a node
    // at a time, where a hash map stops every send to rehash and copy all
    // it holds (pauses of hundreds of milliseconds at a few 100k messages).
    messages: BTreeMap<String, Message>,
    /// Message ids by conversation; `seq` is index + 1.
    convs: BTreeMap<String, Vec<String>>,
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
    /// (pts, message id), ascending
    entries: VecDeque<(u64, String)>,
}

impl MemoryStore {
    pub fn new(retention: Retention) -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            retention,
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

    fn append_inbox(&mut self, user: &str, msg_id: &str, now_ms: u64, retention: Retention) -> u64 {
        let inbox = self.inboxes.entry(user.to_owned()).or_default();
        inbox.pts += 1;
        inbox.entries.push_back((inbox.pts, msg_id.to_owned()));
        let cutoff = now_ms.saturating_sub(retention.max_age_ms);
        while inbox.entries.len() as u64 > retention.max_entries {
            let Some((_, oldest)) = inbox.entries.front() else {
                break;
            };
            let ts = self.messages.get(oldest).map_or(0, |m| m.ts);
            if ts >= cutoff {
                break;
            }
            inbox.entries.pop_front();
        }
        inbox.pts
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

    async fn send(
        &self,
        new: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<Stored, StoreError> {
        let mut st = self.lock();
        let now = new.ts;
        st.expire_client_ids(now);
        let key = (new.from.clone(), client_id.to_owned());
        if let Some(first) = st.client_ids.get(&key) {
            let msg = st.messages.get(&first.id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("client id points at missing message {}", first.id))
            })?;
            let (sender_pts, receiver_pts) = (first.sender_pts, first.receiver_pts);
            let routes = routes.then(|| st.routes_of(&msg));
            return Ok(Stored {
                msg,
                sender_pts,
                receiver_pts,
                duplicate: true,
                routes,
            });
        }
        let conv = st.convs.entry(new.conv.clone()).or_default();
        conv.push(new.id.clone());
        let seq = conv.len() as u64;
        let msg = new.into_message(seq);
        st.messages.insert(msg.id.clone(), msg.clone());
        let sender_pts = st.append_inbox(&msg.from, &msg.id, now, self.retention);
        let receiver_pts = if msg.to != msg.from {
            let pts = st.append_inbox(&msg.to, &msg.id, now, self.retention);
            *st.unread
                .entry(msg.to.clone())
                .or_default()
                .entry(msg.from.clone())
                .or_default() += 1;
            Some(pts)
        } else {
            None
        };
        st.client_ids.insert(
            key.clone(),
            FirstSend {
                id: msg.id.clone(),
                sender_pts,
                receiver_pts,
            },
        );
        st.client_id_expiry
            .entry(now + CLIENT_ID_TTL_MS)
            .or_default()
            .push(key);
        let routes = routes.then(|| st.routes_of(&msg));
        Ok(Stored {
            msg,
            sender_pts,
            receiver_pts,
            duplicate: false,
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
        let st = self.lock();
        let Some(inbox) = st.inboxes.get(user) else {
            return Ok(SyncPage {
                entries: vec![],
                more: false,
                pts: 0,
            });
        };
        let start = inbox.entries.partition_point(|(pts, _)| *pts <= after);
        let mut entries = Vec::new();
        for (pts, id) in inbox.entries.iter().skip(start).take(limit as usize) {
            let msg = st.messages.get(id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("inbox points at missing message {id}"))
            })?;
            entries.push(InboxEntry { pts: *pts, msg });
        }
        let more = inbox.entries.len() - start > entries.len();
        Ok(SyncPage {
            entries,
            more,
            pts: inbox.pts,
        })
    }

    async fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: u64,
    ) -> Result<HistoryPage, StoreError> {
        let st = self.lock();
        let Some(ids) = st.convs.get(conv) else {
            return Ok(HistoryPage {
                messages: vec![],
                more: false,
            });
        };
        // seq s lives at index s - 1; messages with seq < before end at index before - 1.
        let end = before.map_or(ids.len(), |b| (b.saturating_sub(1) as usize).min(ids.len()));
        let start = end.saturating_sub(limit as usize);
        let messages = ids[start..end]
            .iter()
            .map(|id| {
                st.messages.get(id).cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!("conversation points at missing message {id}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HistoryPage {
            messages,
            more: start > 0,
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
        let mut st = self.lock();
        let last = st.convs.get(conv).map_or(0, |c| c.len() as u64);
        if seq > last {
            return Ok(ReadOutcome::BeyondEnd { last });
        }
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
        let mut st = self.lock();
        let Some(msg) = st.messages.get_mut(msg_id) else {
            return Ok(PlayedOutcome::NotFound);
        };
        if msg.to != user {
            return Ok(PlayedOutcome::Forbidden);
        }
        if msg.kind != Kind::Voice {
            return Ok(PlayedOutcome::NotVoice);
        }
        msg.played = Some(true);
        Ok(PlayedOutcome::Played(Box::new(msg.clone())))
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
