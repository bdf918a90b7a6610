//! `read`: mark a conversation read up to `seq`, clear the unread count,
//! and send a `receipt` to every other session of both users (in a group:
//! of every member).

use super::{Failure, Outcome, Peer, SessionCtx, member_of, to_both, to_members};
use crate::node::Node;
use crate::protocol::server::ServerFrame;
use crate::protocol::{ErrorCode, dm_conv, group_conv};
use crate::store::ReadOutcome;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    peer: Peer,
    seq: u64,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    // The unread count of a group is kept under its conversation id.
    let (conv, unread_key, members): (String, String, Option<Vec<String>>) = match &peer {
        Peer::User(with) => (dm_conv(&s.user, with), with.clone(), None),
        Peer::Group(g) => {
            let group = member_of(node, &s.user, g).await?;
            let conv = group_conv(g);
            (conv.clone(), conv, Some(group.members))
        }
    };
    match node
        .store
        .mark_read(&s.user, &unread_key, &conv, seq)
        .await?
    {
        ReadOutcome::BeyondEnd { last } => Err(Failure::new(
            ErrorCode::BadRequest,
            format!("seq {seq} is beyond the newest message ({last}) of {conv}"),
        )),
        ReadOutcome::Marked => {
            let receipt = ServerFrame::Receipt {
                conv: &conv,
                reader: &s.user,
                seq,
            }
            .to_json();
            let deliveries = match (&peer, members) {
                (_, Some(members)) => to_members(s, &members, receipt),
                (Peer::User(with), None) => to_both(s, with, receipt),
                (Peer::Group(_), None) => Vec::new(),
            };
            Ok(Outcome {
                reply: ServerFrame::Ok { rid }.to_json(),
                deliveries,
                routes: None,
            })
        }
    }
}
