//! `group_create`, `group_add`, `group_remove`, `group_leave`,
//! `group_info`: membership as stored `system` messages of the group's
//! conversation (PROTOCOL.md 1.1, "Groups"). Every change reaches every
//! member it concerns as a `msg` with their own `pts`, so offline members
//! learn it by `sync`; a removed or leaving user gets that message and
//! nothing after it.

use super::{Failure, Outcome, SessionCtx, group_msgs, group_refusal, member_of};
use crate::ids;
use crate::node::Node;
use crate::protocol::server::ServerFrame;
use crate::store::{GroupChange, GroupOp};

fn change_of(node: &Node, s: &SessionCtx, group: &str, op: GroupOp) -> GroupChange {
    GroupChange {
        group: group.to_owned(),
        actor: s.user.to_string(),
        op,
        msg_ids: [node.ids.next(), node.ids.next()],
        ts: ids::now_ms(),
        max_members: node.settings.max_group_members,
    }
}

pub async fn create(
    node: &Node,
    s: &SessionCtx,
    name: String,
    members: Vec<String>,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let id = format!("g-{}", node.ids.next());
    let change = change_of(node, s, &id, GroupOp::Create { name, members });
    let done = group_refusal(
        node.store
            .group_change(change, node.hub.is_clustered())
            .await?,
        node,
        &id,
    )?;
    let group = done.group.ok_or_else(|| {
        Failure::from(crate::store::StoreError::Corrupt("created no group".into()))
    })?;
    let deliveries = done
        .messages
        .iter()
        .flat_map(|m| group_msgs(s, m))
        .collect();
    node.metrics
        .messages_stored
        .inc_by(done.messages.len() as u64);
    Ok(Outcome {
        reply: ServerFrame::Group { group: &group, rid }.to_json(),
        deliveries,
        routes: done.routes,
    })
}

pub async fn change(
    node: &Node,
    s: &SessionCtx,
    group: &str,
    op: GroupOp,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let change = change_of(node, s, group, op);
    let done = group_refusal(
        node.store
            .group_change(change, node.hub.is_clustered())
            .await?,
        node,
        group,
    )?;
    node.metrics
        .messages_stored
        .inc_by(done.messages.len() as u64);
    Ok(Outcome {
        reply: ServerFrame::Ok { rid }.to_json(),
        deliveries: done
            .messages
            .iter()
            .flat_map(|m| group_msgs(s, m))
            .collect(),
        routes: None,
    })
}

pub async fn info(
    node: &Node,
    s: &SessionCtx,
    group: &str,
    rid: Option<&str>,
) -> Result<Outcome, Failure> {
    let g = member_of(node, &s.user, group).await?;
    Ok(Outcome::reply(
        ServerFrame::Group { group: &g, rid }.to_json(),
    ))
}
