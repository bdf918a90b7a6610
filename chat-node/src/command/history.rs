//! `history`: a page of the user's conversation with one peer. The
//! conversation id is built from the session's user, so nobody reads another
//! user's conversations. Cut to the reply byte budget, newest kept.

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
    let mut page = node
        .store
        .history(&dm_conv(&s.user, with), before, limit)
        .await?;
    let cut = super::page::keep_last(&mut page.messages, node.settings.connection.max_reply_bytes);
    Ok(Outcome::reply(
        ServerFrame::History {
            with,
            messages: &page.messages,
            more: page.more || cut,
            rid,
        }
        .to_json(),
    ))
}
