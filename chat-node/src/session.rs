//! The sessions this node holds, by user and by session id (one user, many
//! devices). Delivering to a local session is a non-blocking channel send: a
//! session whose queue is full is too slow to keep up and is told to close
//! (it syncs from its inbox when it comes back), so it never stalls delivery
//! to anyone else.

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
}

/// All sessions of this node.
#[derive(Debug, Default)]
pub struct Sessions {
    by_user: RwLock<HashMap<Arc<str>, Vec<SessionHandle>>>,
    count: AtomicUsize,
}

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
    /// Adds a session; it stays until the returned guard is dropped.
    pub fn add(self: &Arc<Self>, user: Arc<str>, handle: SessionHandle) -> Registration {
        let id = handle.id.clone();
        self.write().entry(user.clone()).or_default().push(handle);
        self.count.fetch_add(1, Ordering::Relaxed);
        Registration {
            sessions: self.clone(),
            user,
            id,
        }
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
            match h.tx.try_send(frame.clone()) {
                Ok(()) => n += 1,
                Err(mpsc::error::TrySendError::Full(_)) => h.stop.trigger(StopReason::TooSlow),
                // The connection is closing; it deregisters itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
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
        };
        (h, rx)
    }

    #[tokio::test]
    async fn delivery_skips_the_sender_and_reaches_every_other_device() {
        let s = Arc::new(Sessions::default());
        let (a, mut ra) = handle("a", "t1", 4);
        let (b, mut rb) = handle("b", "t2", 4);
        let _ga = s.add("alice".into(), a);
        let _gb = s.add("alice".into(), b);
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
        let _g1 = s.add("bob".into(), slow);
        let _g2 = s.add("bob".into(), fast);
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
        let g = s.add("alice".into(), a);
        assert!(s.has_user("alice"));
        drop(g);
        assert!(!s.has_user("alice"));
        assert_eq!(s.online(), 0);
    }

    #[tokio::test]
    async fn kick_reaches_only_sessions_of_that_token() {
        let s = Arc::new(Sessions::default());
        let (a, _ra) = handle("a", "t1", 1);
        let (b, _rb) = handle("b", "t2", 1);
        let (sa, sb) = (a.stop.clone(), b.stop.clone());
        let _g = (s.add("alice".into(), a), s.add("alice".into(), b));
        assert_eq!(s.kick_token("alice", "t1"), 1);
        assert_eq!(sa.triggered().await, StopReason::TokenRevoked);
        assert!(sb.reason.get().is_none());
    }
}
