//! Identifiers and secrets the node makes: message ids (ULIDs, increasing
//! with time), session ids, tokens, and the hashes tokens are stored under.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Makes message ids: ULIDs, monotonic within this node, so two messages
/// stored by one node in the same millisecond still sort in order.
#[derive(Default)]
pub struct MessageIds {
    generator: Mutex<ulid::Generator>,
}

impl MessageIds {
    pub fn next(&self) -> String {
        let mut g = self.generator.lock().unwrap_or_else(|p| p.into_inner());
        match g.generate() {
            Ok(id) => id.to_string(),
            // 2^80 ids in one millisecond: take a fresh random one.
            Err(overflow) => overflow.commit_overflow_random().to_string(),
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A session id: unique per connection, across the cluster.
pub fn session_id() -> String {
    format!("s-{}", random_hex(12))
}

/// A fresh token secret: `<platform>.<64 hex digits>`.
pub fn token(platform: &str) -> String {
    format!("{platform}.{}", random_hex(32))
}

/// A fresh admin token.
pub fn admin_token() -> String {
    random_hex(24)
}

/// Tokens are stored and compared by their SHA-256, never in the clear.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares secrets in time independent of where they differ.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_increase() {
        let ids = MessageIds::default();
        let v: Vec<String> = (0..1000).map(|_| ids.next()).collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v[0].len(), 26);
    }

    #[test]
    fn tokens_carry_their_platform_and_are_stored_hashed() {
        let t = token("ios");
        assert!(t.starts_with("ios.") && t.len() == 4 + 64);
        assert_ne!(token("ios"), t);
        // The hash is SHA-256 of the whole token, in lower-case hex (the
        // key a token is stored under): checked against values computed
        // elsewhere (FIPS 180-2's "abc", and Python's hashlib).
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let fixed = format!("ios.{}", "ab".repeat(32));
        assert_eq!(
            token_hash(&fixed),
            "6169a53874bdb57ab4a8d8462ac56f62d90d6382dba7b7e156564651cfcf9c96"
        );
        // Tokens one character apart are stored apart.
        let mut other = fixed.clone();
        other.replace_range(67.., "c");
        assert_ne!(token_hash(&fixed), token_hash(&other));
        assert_ne!(token_hash(&t), token_hash(&token("ios")));
        assert!(!token_hash(&t).contains(&t[4..]));
    }

    #[test]
    fn secret_comparison() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
