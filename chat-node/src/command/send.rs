//! `send`: store a message, reply `sent`, deliver `msg` to every other
//! session of both users (in a group: of every member).

use super::{Failure, Outcome, SessionCtx, delivery, group_msgs, group_refusal};
use crate::ids;
use crate::node::Node;
use crate::protocol::client::SendRequest;
use crate::protocol::server::ServerFrame;
use crate::protocol::{dm_conv, group_conv};
use crate::store::NewMessage;

pub async fn apply(
    node: &Node,
    s: &SessionCtx,
    req: SendRequest,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    if let Some(group) = req.group.clone() {
        return to_group(node, s, req, group, rid).await;
    }
    let new = NewMessage {
        id: node.ids.next(),
        conv: dm_conv(&s.user, &req.to),
        // The sender is always the session's user.
        from: s.user.to_string(),
        to: req.to,
        group: None,
        kind: req.kind,
        body: req.body,
        media: req.media,
        ts: ids::now_ms(),
        system: None,
    };
    let stored = match node.store.send(new, &req.id, node.wants_routes()).await {
        Ok(stored) => stored,
        Err(e) => {
            // It may have been stored all the same (a Redis timeout).
            node.unanswered.remember(&s.user, &req.id);
            return Err(Failure::from(e).with_id(&req.id));
        }
    };
    let answered_unavailable = node.unanswered.answered(&s.user, &req.id);
    let reply = ServerFrame::Sent {
        id: &req.id,
        msg: &stored.msg,
        rid,
    }
    .to_json();
    if !stored.duplicate {
        node.metrics.messages_stored.inc();
        node.metrics.push.dropped(stored.push_dropped);
    }
    // A retry (duplicate) is delivered to nobody (PROTOCOL.md: nobody
    // receives it twice), unless this node answered its first attempt
    // `unavailable`: that one may have been stored (a Redis timeout) and
    // delivered to nobody, so it is delivered now, with its first positions
    // (crate::unanswered).
    if stored.duplicate && !answered_unavailable {
        return Ok(Outcome::reply(reply));
    }
    let msg = &stored.msg;
    let mut deliveries = Vec::with_capacity(2);
    if let Some(pts) = stored.receiver_pts {
        let frame = ServerFrame::Msg { pts, msg }.to_json();
        deliveries.push(delivery(&msg.to, frame, None, true));
    }
    if stored.sender_pts > 0 {
        let frame = ServerFrame::Msg {
            pts: stored.sender_pts,
            msg,
        }
        .to_json();
        deliveries.push(delivery(&msg.from, frame, Some(&s.session), true));
    }
    Ok(Outcome {
        reply,
        deliveries,
        routes: stored.routes,
    })
}

/// A send to a group: one atomic store step, then `msg` to every member's
/// sessions with their own `pts`.
async fn to_group(
    node: &Node,
    s: &SessionCtx,
    req: SendRequest,
    group: String,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let new = NewMessage {
        id: node.ids.next(),
        conv: group_conv(&group),
        from: s.user.to_string(),
        to: String::new(),
        group: Some(group.clone()),
        kind: req.kind,
        body: req.body,
        media: req.media,
        ts: ids::now_ms(),
        system: None,
    };
    let outcome = node
        .store
        .group_send(new, &req.id, node.wants_routes())
        .await
        .map_err(|e| Failure::from(e).with_id(&req.id))?;
    let stored = group_refusal(outcome, node, &group).map_err(|f| f.with_id(&req.id))?;
    if !stored.duplicate {
        node.metrics.messages_stored.inc();
        node.metrics.push.dropped(stored.push_dropped);
    }
    Ok(Outcome {
        reply: ServerFrame::Sent {
            id: &req.id,
            msg: &stored.msg,
            rid,
        }
        .to_json(),
        deliveries: group_msgs(s, &stored),
        routes: stored.routes.clone(),
    })
}
