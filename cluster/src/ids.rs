//! Rules for the names that end up inside Redis keys and RabbitMQ names.

/// Longest cluster id: it prefixes keys and queue names, and RabbitMQ
/// limits a name to 255 bytes.
pub const MAX_CLUSTER_ID: usize = 63;

/// Checks a cluster id: 1 to 63 characters of `A-Z a-z 0-9 - _`. No `:`
/// (the key separator) and no `.` (the queue-name separator).
pub fn check_cluster_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLUSTER_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cluster id {id:?} must be 1 to {MAX_CLUSTER_ID} characters of A-Z a-z 0-9 - _"
        ))
    }
}

/// `chat-3` -> 3: a StatefulSet pod's hostname ends in its ordinal.
pub fn ordinal_from_hostname(hostname: &str) -> Option<u32> {
    let (_, n) = hostname.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_rule() {
        assert!(check_cluster_id("local").is_ok());
        assert!(check_cluster_id("ns_chat-1").is_ok());
        for bad in ["", "a b", "a:b", "a.b", &"x".repeat(64)] {
            assert!(check_cluster_id(bad).is_err(), "{bad:?} passed");
        }
        assert!(check_cluster_id(&"x".repeat(63)).is_ok());
    }

    #[test]
    fn ordinal_comes_from_statefulset_hostname() {
        assert_eq!(ordinal_from_hostname("chat-3"), Some(3));
        assert_eq!(ordinal_from_hostname("my-chat-12"), Some(12));
        assert_eq!(ordinal_from_hostname("laptop"), None);
        assert_eq!(ordinal_from_hostname("chat-"), None);
        assert_eq!(ordinal_from_hostname("chat-x1"), None);
    }
}
