//! `unread`: the user's unread counts by peer.

use super::{Failure, Outcome, SessionCtx};
use crate::node::Node;
use crate::protocol::server::ServerFrame;

pub async fn apply(node: &Node, s: &SessionCtx, rid: Option<&str>) -> Result<Outcome, Failure> {
    let counts = node.store.unread(&s.user).await?;
    Ok(Outcome::reply(
        ServerFrame::Unread {
            counts: &counts,
            rid,
        }
        .to_json(),
    ))
}
