//! `sync`: a page of the user's own inbox, cut to the reply byte budget.

use super::{Failure, Outcome, SessionCtx};
use crate::node::Node;
use crate::protocol::server::ServerFrame;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    after: u64,
    limit: u64,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let mut page = node.store.sync(&s.user, after, limit).await?;
    let cut = super::page::keep_first(&mut page.entries, node.settings.connection.max_reply_bytes);
    Ok(Outcome::reply(
        ServerFrame::Synced {
            entries: &page.entries,
            more: page.more || cut,
            pts: page.pts,
            trimmed_to: page.trimmed_to,
            rid,
        }
        .to_json(),
    ))
}
