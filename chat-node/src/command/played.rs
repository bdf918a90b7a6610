//! `played`: the receiver marks a voice message played; every other session
//! of both users hears about it.

use super::{Failure, Outcome, SessionCtx, to_both, to_members};
use crate::node::Node;
use crate::protocol::ErrorCode;
use crate::protocol::server::ServerFrame;
use crate::store::PlayedOutcome;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    msg_id: &str,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    match node.store.mark_played(&s.user, msg_id).await? {
        PlayedOutcome::NotFound => Err(Failure::new(
            ErrorCode::NotFound,
            format!("no message {msg_id}"),
        )),
        PlayedOutcome::Forbidden => Err(Failure::new(
            ErrorCode::Forbidden,
            "only the receiver of a voice message (in a group: a member but its sender) may mark it played",
        )),
        PlayedOutcome::NotVoice => Err(Failure::new(
            ErrorCode::BadRequest,
            format!("message {msg_id} is not a voice message"),
        )),
        PlayedOutcome::Played(msg) => {
            let frame = ServerFrame::Played {
                msg: &msg.id,
                conv: &msg.conv,
                by: &s.user,
            }
            .to_json();
            let deliveries = match &msg.group {
                None => to_both(s, &msg.from, frame),
                Some(g) => {
                    let members = node.store.group(g).await?.map(|g| g.members);
                    to_members(s, &members.unwrap_or_default(), frame)
                }
            };
            Ok(Outcome {
                reply: ServerFrame::Ok { rid }.to_json(),
                deliveries,
                routes: None,
            })
        }
    }
}
