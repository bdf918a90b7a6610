//! `conversations`: the user's conversation list, most recently active
//! first, each with its last message, unread count and read state; cut
//! to the reply byte budget like every page.

use super::{Failure, Outcome, SessionCtx};
use crate::ids;
use crate::node::Node;
use crate::protocol::server::ServerFrame;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    before: Option<u64>,
    limit: u64,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    // Default: now (and a message stored this very millisecond is in).
    let before = before.unwrap_or_else(|| ids::now_ms() + 1);
    let mut page = node.store.conversations(&s.user, before, limit).await?;
    let cut = super::page::keep_first(&mut page.items, node.settings.connection.max_reply_bytes);
    Ok(Outcome::reply(
        ServerFrame::Conversations {
            items: &page.items,
            more: page.more || cut,
            rid,
        }
        .to_json(),
    ))
}
