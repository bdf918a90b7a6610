//! `typing`: tells the peer's (or the other members') live sessions that
//! the user is typing. Nothing is stored and nothing is answered; a
//! session's frames beyond one per conversation per 2 s are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Failure, Outcome, Peer, SessionCtx, delivery, member_of};
use crate::node::Node;
use crate::protocol::server::ServerFrame;
use crate::protocol::{dm_conv, group_conv};

/// One `typing` per conversation per this long, per session.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(2);

/// When a session last passed `typing` on, per conversation.
#[derive(Debug, Default)]
pub struct TypingLimit {
    last: Mutex<HashMap<String, Instant>>,
}

impl TypingLimit {
    /// Whether a `typing` for `conv` at `now` goes on (and counts as the last).
    pub fn allow(&self, conv: &str, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last
            .get(conv)
            .is_some_and(|t| now.duration_since(*t) < TYPING_INTERVAL)
        {
            return false;
        }
        // Forget what no longer limits anything, so the map stays as
        // small as the conversations typed in the last 2 s.
        last.retain(|_, t| now.duration_since(*t) < TYPING_INTERVAL);
        last.insert(conv.to_owned(), now);
        true
    }
}

pub async fn apply(node: &Node, s: &SessionCtx, peer: Peer) -> Result<Outcome, Failure> {
    let conv = match &peer {
        Peer::User(to) => dm_conv(&s.user, to),
        Peer::Group(g) => group_conv(g),
    };
    if !s.typing.allow(&conv, Instant::now()) {
        node.metrics.typing_dropped.inc();
        return Ok(Outcome::default());
    }
    let frame = ServerFrame::Typing {
        conv: &conv,
        from: &s.user,
    }
    .to_json();
    let deliveries = match &peer {
        Peer::User(to) if **to == *s.user => Vec::new(),
        Peer::User(to) => vec![delivery(to, frame, None, false)],
        Peer::Group(g) => {
            // Membership is read, never written.
            let group = member_of(node, &s.user, g).await?;
            group
                .members
                .iter()
                .filter(|m| **m != *s.user)
                .map(|m| delivery(m, frame.clone(), None, false))
                .collect()
        }
    };
    Ok(Outcome {
        reply: String::new(),
        deliveries,
        routes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_typing_per_conversation_per_interval() {
        let l = TypingLimit::default();
        let t0 = Instant::now();
        assert!(l.allow("dm:a:b", t0));
        assert!(!l.allow("dm:a:b", t0 + Duration::from_millis(1999)));
        assert!(l.allow("dm:a:c", t0 + Duration::from_millis(10)));
        assert!(l.allow("dm:a:b", t0 + TYPING_INTERVAL));
    }
}
