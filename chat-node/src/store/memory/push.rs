//! The in-memory store's offline push feed: entries are queued under the
//! store's one mutex in the same step as the message (so presence is read
//! in that step, as the Redis scripts do), bounded in entries and in bytes,
//! and taken by the node's one pusher. Like everything in this store they
//! are lost on restart.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;

use super::*;
use crate::store::{PushEntry, PushFeed};

/// How long `take` waits for an entry when there is none.
const WAIT: Duration = Duration::from_millis(500);

/// The queue, inside the store's state.
pub(super) struct PushQueue {
    max_entries: usize,
    max_bytes: usize,
    waiting: VecDeque<(PushEntry, usize)>,
    /// Taken and not yet done: key -> bytes.
    in_hand: HashMap<String, usize>,
    /// Bytes of entries waiting or in hand.
    bytes: usize,
    next_key: u64,
}

impl PushQueue {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        PushQueue {
            max_entries: max_entries.max(1),
            max_bytes,
            waiting: VecDeque::new(),
            in_hand: HashMap::new(),
            bytes: 0,
            next_key: 0,
        }
    }

    fn len(&self) -> usize {
        self.waiting.len() + self.in_hand.len()
    }

    /// Queues a push of `msg` for `user`; false (nothing queued) when full.
    pub(super) fn offer(&mut self, user: &str, msg: &Message) -> bool {
        // What the entry holds: the message and its names.
        let bytes = serde_json::to_vec(msg).map_or(0, |j| j.len()) + user.len() + 96;
        if self.len() >= self.max_entries || self.bytes + bytes > self.max_bytes {
            return false;
        }
        self.next_key += 1;
        self.bytes += bytes;
        let entry = PushEntry {
            key: self.next_key.to_string(),
            user: user.to_owned(),
            msg_id: msg.id.clone(),
            msg: Some(msg.clone()),
            queued_ms: crate::ids::now_ms(),
        };
        self.waiting.push_back((entry, bytes));
        true
    }

    fn take(&mut self, max: usize) -> Vec<PushEntry> {
        let n = max.min(self.waiting.len());
        let mut out = Vec::with_capacity(n);
        for (entry, bytes) in self.waiting.drain(..n) {
            self.in_hand.insert(entry.key.clone(), bytes);
            out.push(entry);
        }
        out
    }

    fn done(&mut self, key: &str) {
        if let Some(bytes) = self.in_hand.remove(key) {
            self.bytes -= bytes;
        }
    }
}

impl MemoryStore {
    /// Queues a push for each of `users` (not the sender) with no live
    /// session, waking the pusher when one was queued; the number the full
    /// queue refused.
    pub(super) fn queue_pushes<'a>(
        &self,
        st: &mut State,
        users: impl Iterator<Item = &'a String>,
        msg: &Message,
    ) -> u64 {
        let Some(q) = st.push.as_mut() else {
            return 0;
        };
        let (mut queued, mut dropped) = (0, 0);
        for u in users {
            if *u == msg.from || st.presence.get(u).is_some_and(|p| !p.is_empty()) {
                continue;
            }
            if q.offer(u, msg) {
                queued += 1;
            } else {
                dropped += 1;
            }
        }
        if queued > 0 {
            self.push_ready.notify_one();
        }
        dropped
    }

    /// Up to `max` waiting entries, each with the message as memory holds
    /// it now (recalled, say), and whether memory still holds it.
    fn take_now(&self, max: usize) -> Vec<(PushEntry, bool)> {
        let mut st = self.lock();
        let Some(q) = st.push.as_mut() else {
            return Vec::new();
        };
        q.take(max)
            .into_iter()
            .map(|mut e| {
                let current = st.messages.get(&e.msg_id).cloned();
                let held = current.is_some();
                if held {
                    e.msg = current;
                }
                (e, held)
            })
            .collect()
    }
}

#[async_trait]
impl PushFeed for MemoryStore {
    async fn take(&self, max: usize, claim: bool) -> Result<Vec<PushEntry>, StoreError> {
        // One process, one pusher: nothing is ever left for another.
        if claim {
            return Ok(Vec::new());
        }
        let mut taken = self.take_now(max);
        if taken.is_empty() {
            let _ = tokio::time::timeout(WAIT, self.push_ready.notified()).await;
            taken = self.take_now(max);
        }
        // A message that left memory for the archive is read from there:
        // it may have been recalled since it was queued.
        let gone: Vec<&str> = taken
            .iter()
            .filter(|(_, current)| !current)
            .map(|(e, _)| e.msg_id.as_str())
            .collect();
        if let (false, Some(a)) = (gone.is_empty(), &self.archive) {
            let archived = a.sql.by_ids(&gone).await?;
            for (e, current) in &mut taken {
                if !*current {
                    e.msg = archived.iter().find(|m| m.id == e.msg_id).cloned();
                }
            }
        }
        Ok(taken.into_iter().map(|(e, _)| e).collect())
    }

    async fn hold(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn done(&self, key: &str) -> Result<(), StoreError> {
        if let Some(q) = self.lock().push.as_mut() {
            q.done(key);
        }
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        Ok(self.lock().push.as_ref().map_or(0, |q| q.len() as u64))
    }
}
