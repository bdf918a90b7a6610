//! `unread`: the user's unread counts by peer, cut to the reply byte
//! budget like every page.

use std::collections::BTreeMap;

use super::{Failure, Outcome, SessionCtx};
use crate::node::Node;
use crate::protocol::server::ServerFrame;

pub async fn apply(node: &Node, s: &SessionCtx, rid: Option<&str>) -> Result<Outcome, Failure> {
    let mut counts = node.store.unread(&s.user).await?;
    let more = keep_largest(&mut counts, node.settings.connection.max_reply_bytes);
    Ok(Outcome::reply(
        ServerFrame::Unread {
            counts: &counts,
            more,
            rid,
        }
        .to_json(),
    ))
}

/// Keeps the largest counts that fit in `budget` bytes (ties by peer);
/// returns whether any were left out. A user has a count per peer who
/// wrote and per group, which others can make many of.
fn keep_largest(counts: &mut BTreeMap<String, u64>, budget: usize) -> bool {
    let mut by_count: Vec<(&String, u64)> = counts.iter().map(|(k, n)| (k, *n)).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let entries = by_count.iter().map(|(k, n)| (*k, *n));
    let kept = super::page::fitting_entries(entries, budget);
    if kept == counts.len() {
        return false;
    }
    let largest = by_count[..kept]
        .iter()
        .map(|(k, n)| ((*k).clone(), *n))
        .collect();
    *counts = largest;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_counts_that_fit_are_kept() {
        let mut counts: BTreeMap<String, u64> = (0..10_000u64)
            .map(|i| (format!("user-{i:05}"), i % 7 + 1))
            .collect();
        assert!(keep_largest(&mut counts, 16 * 1024));
        let json = serde_json::to_string(&counts).unwrap();
        assert!(json.len() < 16 * 1024, "{}", json.len());
        assert!(counts.len() > 500, "{}", counts.len());
        assert!(counts.values().all(|&n| n >= 6), "the largest go first");
        let mut few: BTreeMap<String, u64> = [("bob".to_owned(), 3)].into();
        assert!(!keep_largest(&mut few, 16 * 1024));
        assert_eq!(few.len(), 1);
    }
}
