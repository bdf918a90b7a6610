//! The wire protocol of PROTOCOL.md: what clients send ([`client`]), what the
//! node answers ([`server`]), the message object ([`message`]), identities,
//! and the error codes; and what nodes send each other over the bus
//! ([`bus`]). Pure: no I/O here, so every rule has a unit test.
//!
//! A crate of its own because three programs share it: chat-node, the
//! chat-bench load generator, and the fuzz targets (whose nightly,
//! sanitized build then compiles this and serde, not the server).

pub mod bus;
pub mod client;
pub mod message;
pub mod server;

use serde::{Deserialize, Serialize};

pub use message::{Kind, Media, Message, SystemEvent};

/// Error codes of PROTOCOL.md, with the wire spelling (also the metric label).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

/// Bytes `value` takes as JSON, counted without building the text (for
/// byte budgets: reply pages, broker messages). A value that cannot be
/// encoded counts as too big for any budget.
pub fn json_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// A refusal to send to the client as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtoError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

/// Close codes of PROTOCOL.md (plus 1013 for a session too slow to keep up,
/// a standard WebSocket code).
pub mod close {
    pub const TOO_LARGE: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const UNAUTHORIZED: u16 = 4001;
    pub const KICKED: u16 = 4002;
    pub const POLICY: u16 = 4003;
    pub const TIMEOUT: u16 = 4008;
    pub const DRAINING: u16 = 4009;
}

/// A user id: 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
pub fn valid_user_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A group id: `g-` and 26 characters of a ULID (Crockford base32).
pub fn valid_group_id(s: &str) -> bool {
    s.len() == 28
        && s.starts_with("g-")
        && s[2..].bytes().all(|b| {
            b.is_ascii_digit()
                || (b.is_ascii_uppercase() && !matches!(b, b'I' | b'L' | b'O' | b'U'))
        })
}

/// The conversation id of a group: `g:<group id>`.
pub fn group_conv(group: &str) -> String {
    format!("g:{group}")
}

/// The group id of a group conversation id.
pub fn conv_group(conv: &str) -> Option<&str> {
    conv.strip_prefix("g:")
}

/// A token platform: 1 to 16 characters of `a-z 0-9`.
pub fn valid_platform(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The conversation id of a one-to-one chat: `dm:<a>:<b>`, ids in byte order.
pub fn dm_conv(a: &str, b: &str) -> String {
    let (x, y) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    format!("dm:{x}:{y}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_protocol_alphabet() {
        assert!(valid_user_id("alice"));
        assert!(valid_user_id("A.b_c-9"));
        assert!(valid_user_id(&"x".repeat(64)));
        assert!(!valid_user_id(&"x".repeat(65)));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("al ice"));
        assert!(!valid_user_id("al:ice"));
        assert!(!valid_user_id("ålice"));
    }

    #[test]
    fn conversation_ids_sort_by_bytes() {
        assert_eq!(dm_conv("bob", "alice"), "dm:alice:bob");
        assert_eq!(dm_conv("alice", "bob"), "dm:alice:bob");
        assert_eq!(dm_conv("alice", "alice"), "dm:alice:alice");
        // byte order: upper case sorts before lower case
        assert_eq!(dm_conv("bob", "Zed"), "dm:Zed:bob");
    }

    #[test]
    fn platforms_are_short_lowercase() {
        assert!(valid_platform("ios"));
        assert!(valid_platform("web2"));
        assert!(!valid_platform("iOS"));
        assert!(!valid_platform(""));
        assert!(!valid_platform("a.b"));
        assert!(!valid_platform(&"a".repeat(17)));
    }
}
