//! The one-to-one sends this node answered `unavailable`, so that a retry of
//! one is delivered and a retry of any other send is not.
//!
//! PROTOCOL.md: a repeated client id "is not stored again … and nobody
//! receives it twice". Most retries follow a reply lost with its
//! connection, after the first attempt was delivered: they are answered
//! `sent` and delivered to nobody. But a Redis that does not answer in time
//! may still run the send script (a timeout cannot tell), and then the
//! message is stored while this node, having answered `unavailable`,
//! delivered it to nobody; the client's retry here is the only chance to
//! deliver it live. So a node remembers what it answered `unavailable`,
//! delivers a retry of exactly those, and forgets one as soon as it is
//! answered `sent`. A retry that reaches another node is not delivered
//! again there; the receiver's devices find the message by `sync` (the next
//! `msg` shows them the gap in `pts`).
//!
//! Bounded: at most [`CAPACITY`] entries of at most 128 bytes of ids each
//! (user ids and client ids are at most 64 bytes); the oldest go first.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most sends remembered: the oldest is forgotten first.
pub const CAPACITY: usize = 4096;

type Key = (Box<str>, Box<str>);

#[derive(Default)]
pub struct Unanswered {
    /// Whether anything is remembered: the common case (nothing) costs a
    /// send one atomic load, not a lock.
    any: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: HashSet<Key>,
    /// Insertion order, for eviction; may hold keys already forgotten.
    order: VecDeque<Key>,
}

impl Unanswered {
    /// `user`'s send with client id `id` was answered `unavailable`.
    pub fn remember(&self, user: &str, id: &str) {
        let key: Key = (user.into(), id.into());
        let mut inner = self.lock();
        if !inner.keys.insert(key.clone()) {
            return;
        }
        inner.order.push_back(key);
        while inner.keys.len() > CAPACITY {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.keys.remove(&old);
        }
        // Forgotten keys left in `order` are dropped once it doubles.
        if inner.order.len() > 2 * CAPACITY {
            let Inner { keys, order } = &mut *inner;
            order.retain(|k| keys.contains(k));
        }
        self.any.store(true, Ordering::Release);
    }

    /// `user`'s send with client id `id` was answered `sent`: whether it was
    /// remembered (answered `unavailable` here before), now forgotten.
    pub fn answered(&self, user: &str, id: &str) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut inner = self.lock();
        let found = inner.keys.remove(&(user.into(), id.into()) as &Key);
        if inner.keys.is_empty() {
            inner.order.clear();
            self.any.store(false, Ordering::Release);
        }
        found
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_is_remembered_until_answered() {
        let u = Unanswered::default();
        assert!(!u.answered("alice", "c-1"));
        u.remember("alice", "c-1");
        u.remember("alice", "c-1");
        assert!(!u.answered("bob", "c-1"));
        assert!(!u.answered("alice", "c-2"));
        assert!(u.answered("alice", "c-1"));
        assert!(!u.answered("alice", "c-1"));
    }

    #[test]
    fn the_oldest_go_first_past_the_capacity() {
        let u = Unanswered::default();
        for i in 0..CAPACITY + 10 {
            u.remember("alice", &i.to_string());
        }
        assert!(!u.answered("alice", "0"));
        assert!(!u.answered("alice", "9"));
        assert!(u.answered("alice", "10"));
        assert!(u.answered("alice", &(CAPACITY + 9).to_string()));
        let inner = u.lock();
        assert_eq!(inner.keys.len(), CAPACITY - 2);
        assert!(inner.order.len() <= 2 * CAPACITY);
    }

    #[test]
    fn forgotten_keys_do_not_grow_the_order_without_bound() {
        let u = Unanswered::default();
        u.remember("bob", "keep");
        for i in 0..10 * CAPACITY {
            let id = i.to_string();
            u.remember("alice", &id);
            assert!(u.answered("alice", &id));
        }
        let inner = u.lock();
        assert!(
            inner.order.len() <= 2 * CAPACITY + 1,
            "{}",
            inner.order.len()
        );
        assert_eq!(inner.keys.len(), 1);
    }
}
