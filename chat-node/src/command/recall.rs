//! `recall`: the sender takes a message back within `recall_window_s`.
//! Its content is gone from every tier, every participant's inbox gets
//! an `event` entry (so offline devices learn it by `sync`), and live
//! sessions receive `recalled` with their own `pts`.

use super::{Failure, Outcome, SessionCtx, delivery, except_mine};
use crate::ids;
use crate::node::Node;
use crate::protocol::ErrorCode;
use crate::protocol::server::ServerFrame;
use crate::store::RecallOutcome;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    msg_id: &str,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let window = node.settings.recall_window;
    let window_ms = window.as_millis() as u64;
    if window_ms == 0 {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "recall is disabled on this node",
        ));
    }
    let outcome = node
        .store
        .recall(&s.user, msg_id, ids::now_ms(), window_ms)
        .await?;
    match outcome {
        RecallOutcome::NotFound => Err(Failure::new(
            ErrorCode::NotFound,
            format!("no message {msg_id}"),
        )),
        RecallOutcome::Forbidden => Err(Failure::new(
            ErrorCode::Forbidden,
            "only the sender of a message may recall it",
        )),
        RecallOutcome::TooLate => Err(Failure::new(
            ErrorCode::BadRequest,
            format!(
                "message {msg_id} is older than the recall window ({} s)",
                window.as_secs()
            ),
        )),
        RecallOutcome::AlreadyRecalled => Err(Failure::new(
            ErrorCode::BadRequest,
            format!("message {msg_id} was recalled already"),
        )),
        RecallOutcome::Recalled {
            msg: _,
            event,
            inboxes,
        } => {
            let deliveries = inboxes
                .iter()
                .map(|(user, pts)| {
                    let frame = ServerFrame::Recalled {
                        pts: *pts,
                        msg: &event.msg,
                        conv: &event.conv,
                        by: &event.by,
                    }
                    .to_json();
                    delivery(user, frame, except_mine(s, user), false)
                })
                .collect();
            Ok(Outcome {
                reply: ServerFrame::Ok { rid }.to_json(),
                deliveries,
                routes: None,
            })
        }
    }
}
