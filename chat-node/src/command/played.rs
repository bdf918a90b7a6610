//! `played`: the receiver marks a voice message played; every other session
//! of both users hears about it.

use super::{Failure, Outcome, SessionCtx, to_both};
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
            "only the receiver of a voice message may mark it played",
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
            Ok(Outcome {
                reply: ServerFrame::Ok { rid }.to_json(),
                deliveries: to_both(s, &msg.from, frame),
                routes: None,
            })
        }
    }
}
