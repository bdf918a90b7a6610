//! `read`: mark the conversation with a peer read up to `seq`, clear the
//! unread count, and send a `receipt` to every other session of both users.

use super::{Failure, Outcome, SessionCtx, to_both};
use crate::node::Node;
use crate::protocol::server::ServerFrame;
use crate::protocol::{ErrorCode, dm_conv};
use crate::store::ReadOutcome;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    with: &str,
    seq: u64,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let conv = dm_conv(&s.user, with);
    match node.store.mark_read(&s.user, with, &conv, seq).await? {
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
            Ok(Outcome {
                reply: ServerFrame::Ok { rid }.to_json(),
                deliveries: to_both(s, with, receipt),
                routes: None,
            })
        }
    }
}
