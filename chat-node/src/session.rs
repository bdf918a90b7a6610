//! The sessions this node holds, by user and by session id (one user, many
//! devices). Delivering to a local session is a non-blocking channel send: a
//! session whose queue is full (in frames or in bytes) is too slow to keep
//! up and is told to close (it syncs from its inbox when it comes back), so
//! it never stalls delivery to anyone else, nor holds unbounded memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Why the node ends a session on its own initiative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Its token was revoked (close 4002).
    TokenRevoked,
    /// Its token expired (close 4002).
    TokenExpired,
    /// Its delivery queue overflowed (close 1013).
    TooSlow,
}

/// A one-shot "stop now" signal with a reason, set by whoever notices first.
#[derive(Debug, Default)]
pub struct Stop {
    reason: OnceLock<StopReason>,
    notify: Notify,
}

impl Stop {
    pub fn trigger(&self, reason: StopReason) {
        if self.reason.set(reason).is_ok() {
            self.notify.notify_one();
        }
    }
    /// Waits until triggered; returns the first reason given.
    pub async fn triggered(&self) -> StopReason {
        loop {
            if let Some(r) = self.reason.get() {
                return *r;
            }
            self.notify.notified().await;
        }
    }
}

/// What the node holds for one live session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: Arc<str>,
    /// SHA-256 of the token the session connected with (for revocation).
    pub token_hash: Arc<str>,
    pub tx: mpsc::Sender<Utf8Bytes>,
    pub stop: Arc<Stop>,
    /// Bytes queued in `tx` and not yet written (the connection subtracts
    /// what it writes).
    pub queued: Arc<AtomicUsize>,
}

/// All sessions of this node.
#[derive(Debug)]
pub struct Sessions {
    by_user: RwLock<HashMap<Arc<str>, Vec<SessionHandle>>>,
    count: AtomicUsize,
    /// Most sessions one user may hold on this node.
    max_per_user: usize,
    /// Most bytes queued for one session.
    max_queued_bytes: usize,
}

impl Default for Sessions {
    /// No limits: for tests of delivery alone.
    fn default() -> Self {
        Sessions::new(usize::MAX, usize::MAX)
    }
}

/// A user holds as many sessions on this node as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySessions;

/// Removes its session from the registry when dropped, however the
/// connection ends.
pub struct Registration {
    sessions: Arc<Sessions>,
    user: Arc<str>,
    id: Arc<str>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.remove(&self.user, &self.id);
    }
}

impl Sessions {
    pub fn new(max_per_user: usize, max_queued_bytes: usize) -> Self {
        Sessions {
            by_user: RwLock::default(),
            count: AtomicUsize::new(0),
            max_per_user,
            max_queued_bytes,
        }
    }

    /// Adds a session; it stays until the returned guard is dropped.
    pub fn add(
        self: &Arc<Self>,
        user: Arc<str>,
        handle: SessionHandle,
    ) -> Result<Registration, TooManySessions> {
        let id = handle.id.clone();
        {
            let mut map = self.write();
            let list = map.entry(user.clone()).or_default();
            if list.len() >= self.max_per_user {
                return Err(TooManySessions);
            }
            list.push(handle);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            sessions: self.clone(),
            user,
            id,
        })
    }

    fn remove(&self, user: &str, id: &str) {
        let mut map = self.write();
        if let Some(list) = map.get_mut(user) {
            let before = list.len();
            list.retain(|h| &*h.id != id);
            if list.len() < before {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                map.remove(user);
            }
        }
    }

    /// Authenticated sessions on this node.
    pub fn online(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether this node holds any session of `user`.
    pub fn has_user(&self, user: &str) -> bool {
        self.read().contains_key(user)
    }

    /// Queues `frame` for every session of `user` except `except`; returns
    /// how many sessions it was queued for.
    pub fn deliver(&self, user: &str, frame: &Utf8Bytes, except: Option<&str>) -> usize {
        let map = self.read();
        let Some(list) = map.get(user) else { return 0 };
        let mut n = 0;
        for h in list.iter().filter(|h| Some(&*h.id) != except) {
            let len = frame.len();
            if h.queued.fetch_add(len, Ordering::Relaxed) + len > self.max_queued_bytes {
                h.queued.fetch_sub(len, Ordering::Relaxed);
                h.stop.trigger(StopReason::TooSlow);
                continue;
            }
            match h.tx.try_send(frame.clone()) {
                Ok(()) => n += 1,
                Err(e) => {
                    h.queued.fetch_sub(len, Ordering::Relaxed);
                    if let mpsc::error::TrySendError::Full(_) = e {
                        h.stop.trigger(StopReason::TooSlow);
                    }
                    // Closed: the connection is closing; it deregisters itself.
                }
            }
        }
        n
    }

    /// Stops every session of `user` that connected with `token_hash`.
    pub fn kick_token(&self, user: &str, token_hash: &str) -> usize {
        let map = self.read();
        let Some(list) = map.get(user) else { return 0 };
        list.iter()
            .filter(|h| &*h.token_hash == token_hash)
            .inspect(|h| h.stop.trigger(StopReason::TokenRevoked))
            .count()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Vec<SessionHandle>>> {
        self.by_user.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Vec<SessionHandle>>> {
        self.by_user.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(id: &str, token: &str, cap: usize) -> (SessionHandle, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(cap);
        let h = SessionHandle {
            id: id.into(),
            token_hash: token.into(),
            tx,
            stop: Arc::default(),
            queued: Arc::default(),
        };
        (h, rx)
    }

    #[tokio::test]
    async fn delivery_skips_the_sender_and_reaches_every_other_device() {
        let s = Arc::new(Sessions::default());
        let (a, mut ra) = handle("a", "t1", 4);
        let (b, mut rb) = handle("b", "t2", 4);
        let _ga = s.add("alice".into(), a).unwrap();
        let _gb = s.add("alice".into(), b).unwrap();
        assert_eq!(s.online(), 2);
        let f = Utf8Bytes::from("x");
        assert_eq!(s.deliver("alice", &f, Some("a")), 1);
        assert_eq!(rb.recv().await.as_deref(), Some("x"));
        assert!(ra.try_recv().is_err());
        assert_eq!(s.deliver("nobody", &f, None), 0);
    }

    #[tokio::test]
    async fn a_full_queue_stops_only_that_session() {
        let s = Arc::new(Sessions::default());
        let (slow, _rs) = handle("slow", "t", 1);
        let (fast, mut rf) = handle("fast", "t", 8);
        let stop = slow.stop.clone();
        let _g1 = s.add("bob".into(), slow).unwrap();
        let _g2 = s.add("bob".into(), fast).unwrap();
        let f = Utf8Bytes::from("m");
        s.deliver("bob", &f, None);
        s.deliver("bob", &f, None);
        assert_eq!(stop.triggered().await, StopReason::TooSlow);
        assert_eq!(rf.recv().await.as_deref(), Some("m"));
        assert_eq!(rf.recv().await.as_deref(), Some("m"));
    }

    #[tokio::test]
    async fn dropping_the_registration_removes_the_session() {
        let s = Arc::new(Sessions::default());
        let (a, _r) = handle("a", "t", 1);
        let g = s.add("alice".into(), a).unwrap();
        assert!(s.has_user("alice"));
        drop(g);
        assert!(!s.has_user("alice"));
        assert_eq!(s.online(), 0);
    }

    #[tokio::test]
    async fn sessions_per_user_are_capped() {
        let s = Arc::new(Sessions::new(2, usize::MAX));
        let (a, _ra) = handle("a", "t", 1);
        let (b, _rb) = handle("b", "t", 1);
        let (c, _rc) = handle("c", "t", 1);
        let (d, _rd) = handle("d", "t", 1);
        let _g = (
            s.add("alice".into(), a).unwrap(),
            s.add("alice".into(), b).unwrap(),
        );
        assert_eq!(s.add("alice".into(), c).err(), Some(TooManySessions));
        // Others are not affected.
        assert!(s.add("bob".into(), d).is_ok());
    }

    #[tokio::test]
    async fn a_queue_over_its_bytes_stops_only_that_session() {
        let s = Arc::new(Sessions::new(usize::MAX, 10));
        let (slow, mut rs) = handle("slow", "t", 100);
        let queued = slow.queued.clone();
        let stop = slow.stop.clone();
        let _g = s.add("bob".into(), slow).unwrap();
        let f = Utf8Bytes::from("123456");
        assert_eq!(s.deliver("bob", &f, None), 1);
        assert_eq!(queued.load(Ordering::Relaxed), 6);
        // The second would make 12 bytes: over, though 98 frames would fit.
        assert_eq!(s.deliver("bob", &f, None), 0);
        assert_eq!(stop.triggered().await, StopReason::TooSlow);
        assert_eq!(queued.load(Ordering::Relaxed), 6);
        assert_eq!(rs.recv().await.as_deref(), Some("123456"));
    }

    #[tokio::test]
    async fn kick_reaches_only_sessions_of_that_token() {
        let s = Arc::new(Sessions::default());
        let (a, _ra) = handle("a", "t1", 1);
        let (b, _rb) = handle("b", "t2", 1);
        let (sa, sb) = (a.stop.clone(), b.stop.clone());
        let _g = (
            s.add("alice".into(), a).unwrap(),
            s.add("alice".into(), b).unwrap(),
        );
        assert_eq!(s.kick_token("alice", "t1"), 1);
        assert_eq!(sa.triggered().await, StopReason::TokenRevoked);
        assert!(sb.reason.get().is_none());
    }
}
