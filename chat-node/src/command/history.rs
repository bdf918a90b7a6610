//! `history`: a page of the user's conversation with one peer or group. The
//! conversation id is built from the session's user, so nobody reads another
//! user's conversations. Cut to the reply byte budget, newest kept.

use super::{Failure, Outcome, Peer, SessionCtx, member_of};
use crate::node::Node;
use crate::protocol::server::ServerFrame;
use crate::protocol::{dm_conv, group_conv};

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    peer: Peer,
    before: Option<u64>,
    limit: u64,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let (conv, with, group) = match &peer {
        Peer::User(with) => (dm_conv(&s.user, with), Some(with.as_str()), None),
        Peer::Group(g) => {
            // Members only: a removed member reads nothing more.
            member_of(node, &s.user, g).await?;
            (group_conv(g), None, Some(g.as_str()))
        }
    };
    let mut page = node.store.history(&conv, before, limit).await?;
    let cut = super::page::keep_last(&mut page.messages, node.settings.connection.max_reply_bytes);
    Ok(Outcome::reply(
        ServerFrame::History {
            with,
            group,
            messages: &page.messages,
            more: page.more || cut,
            rid,
        }
        .to_json(),
    ))
}
