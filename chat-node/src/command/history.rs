//! `history`: a page of the user's conversation with one peer. The
//! conversation id is built from the session's user, so nobody reads another
//! user's conversations.

use super::{Failure, Outcome, SessionCtx};
use crate::node::Node;
use crate::protocol::dm_conv;
use crate::protocol::server::ServerFrame;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    with: &str,
    before: Option<u64>,
    limit: u64,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let page = node
        .store
        .history(&dm_conv(&s.user, with), before, limit)
        .await?;
    Ok(Outcome::reply(
        ServerFrame::History {
            with,
            messages: &page.messages,
            more: page.more,
            rid,
        }
        .to_json(),
    ))
}
