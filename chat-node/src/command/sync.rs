//! `sync`: a page of the user's own inbox.

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
    let page = node.store.sync(&s.user, after, limit).await?;
    Ok(Outcome::reply(
        ServerFrame::Synced {
            entries: &page.entries,
            more: page.more,
            pts: page.pts,
            rid,
        }
        .to_json(),
    ))
}
