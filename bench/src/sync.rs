//! The catch-up phase: after the traffic, sampled users open a fresh
//! session and `sync` their whole inbox from `pts` 0, page by page, as a
//! client does after a disconnect. It measures how long pages take and how
//! fast entries arrive, and checks that every acknowledged message of the
//! user is there exactly once.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chat_node::protocol::client::{Command, Request, SYNC_LIMIT};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::report::{Latency, SyncReport};
use crate::session::{self, Frame};

/// Entries asked for per page (the protocol's maximum).
const PAGE: u64 = SYNC_LIMIT.1;

/// One user's catch-up: every inbox entry's message id, page latencies.
async fn sync_one(
    node: &str,
    token: &str,
    latencies_us: &mut Vec<u64>,
) -> Result<Vec<String>, String> {
    let mut ws = session::connect(node, token, "bench-sync").await?;
    let mut after = 0u64;
    let mut ids = Vec::new();
    loop {
        let req = Request {
            rid: None,
            command: Command::Sync { after, limit: PAGE },
        };
        ws.send(WsMessage::Text(session::encode(&req).into()))
            .await
            .map_err(|e| e.to_string())?;
        let asked = Instant::now();
        // Skip anything that is not the answer (a late delivery, say).
        let more = loop {
            let text = match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(_)) => continue,
                other => return Err(format!("{node}: connection ended: {other:?}")),
            };
            let Some(page) = Frame::read(&text) else {
                continue;
            };
            match page.kind.as_ref() {
                "synced" => {
                    if let Some(last) = page.entries.last() {
                        after = last.pts;
                    }
                    ids.extend(page.entries.into_iter().filter_map(|e| e.msg.map(|m| m.id)));
                    break page.more;
                }
                "error" => return Err(format!("{node}: sync refused: {text}")),
                _ => continue,
            }
        };
        latencies_us.push(asked.elapsed().as_micros() as u64);
        if !more {
            let _ = ws.close(None).await;
            return Ok(ids);
        }
    }
}

/// Syncs each of `users` (name, node, token) in turn and checks their
/// inboxes against `expected` (user -> acknowledged message ids).
pub async fn run(
    users: &[(String, String, String)],
    expected: &HashMap<String, HashSet<String>>,
) -> SyncReport {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let (mut entries, mut missing, mut duplicated, mut errors) = (0u64, 0u64, 0u64, 0u64);
    for (user, node, token) in users {
        match sync_one(node, token, &mut latencies).await {
            Ok(ids) => {
                entries += ids.len() as u64;
                let (m, d) = check(ids, expected.get(user));
                missing += m;
                duplicated += d;
            }
            Err(e) => {
                if errors < 3 {
                    eprintln!("chat-bench: sync of {user} failed: {e}");
                }
                errors += 1;
            }
        }
    }
    let pages = latencies.len() as u64;
    SyncReport {
        users: users.len(),
        pages,
        entries,
        entries_per_s: entries as f64 / started.elapsed().as_secs_f64().max(1e-9),
        page_latency: Latency::from_us(&mut latencies),
        missing,
        duplicated,
        errors,
    }
}

/// (missing, duplicated): acknowledged ids absent from an inbox, and inbox
/// entries seen more than once.
fn check(ids: Vec<String>, want: Option<&HashSet<String>>) -> (u64, u64) {
    let mut seen = HashSet::with_capacity(ids.len());
    let mut duplicated = 0;
    for id in ids {
        if !seen.insert(id) {
            duplicated += 1;
        }
    }
    let missing = want.map_or(0, |w| w.iter().filter(|id| !seen.contains(*id)).count());
    (missing as u64, duplicated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finds_missing_and_repeated_entries() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want: HashSet<String> = ids(&["a", "b", "c"]).into_iter().collect();
        assert_eq!(check(ids(&["a", "b", "c"]), Some(&want)), (0, 0));
        assert_eq!(check(ids(&["a", "c", "c", "x"]), Some(&want)), (1, 1));
        assert_eq!(check(ids(&["a", "a"]), None), (0, 1));
    }
}
