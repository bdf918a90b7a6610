//! Groups, the conversation list and recall on Redis: group.lua,
//! conversations.lua and recall.lua, and what the archive adds for
//! messages that left Redis.

use std::collections::HashMap;

use ::redis::Value;

use super::decode::{
    as_array, as_fields, as_string, as_u64, corrupt, maybe_message, nodes_from_value,
};
use super::*;
use crate::protocol::group_conv;

/// `{user, pts, user, pts, ...}` from a script.
fn inboxes(v: Value) -> Result<Vec<(String, u64)>, StoreError> {
    as_array(v)?
        .chunks(2)
        .map(|p| match p {
            [u, n] => Ok((as_string(u)?, as_u64(n)?)),
            _ => Err(corrupt("odd inbox list")),
        })
        .collect()
}

/// The reasons group.lua gives, as the static texts the outcomes carry.
fn reason(why: &str) -> &'static str {
    match why {
        "only members may write to a group" => "only members may write to a group",
        "only the group's owner may add members" => "only the group's owner may add members",
        "only the group's owner may remove members" => "only the group's owner may remove members",
        "not a member of this group" => "not a member of this group",
        "the owner leaves with group_leave" => "the owner leaves with group_leave",
        "group id taken" => "group id taken",
        _ => "not allowed in this group",
    }
}

/// One run of group.lua.
struct GroupCall<'a> {
    op: &'a str,
    group: &'a str,
    actor: &'a str,
    ts: u64,
    msg_ids: [&'a str; 2],
    /// The client id of a `send`.
    client_id: Option<&'a str>,
    max_members: usize,
    /// Return the recipients' presence.
    routes: bool,
    /// The op's own arguments.
    extra: Vec<String>,
}

/// What group.lua stored: the group after the change and its messages, or
/// the refusal.
type GroupReply = Result<(Option<GroupView>, Vec<GroupStored>, Option<Routes>), GroupOutcome<()>>;

impl RedisStore {
    /// Runs group.lua.
    async fn run_group(&self, c: GroupCall<'_>) -> Result<Vec<Value>, StoreError> {
        let GroupCall {
            op,
            group,
            actor,
            ts,
            msg_ids,
            client_id,
            max_members,
            routes,
            extra,
        } = c;
        let k = &self.keys;
        let conv = group_conv(group);
        let cutoff = ts.saturating_sub(self.retention.max_age_ms);
        let (bucket, before, expires) = client_id_buckets(ts, self.client_id_ttl_ms);
        let mut inv = self.scripts.group.prepare_invoke();
        inv.key(k.group(group))
            .key(k.group_members(group))
            .key(k.group_left(group))
            .key(k.conv(&conv))
            .key(k.conv_seq(&conv))
            .key(k.archive_stream())
            .key(k.client_ids(actor, bucket))
            .key(k.push_stream())
            .key(k.client_ids(actor, before))
            .arg(op)
            .arg(group)
            .arg(actor)
            .arg(ts)
            .arg(k.prefix())
            .arg(expires)
            .arg(self.retention.max_entries)
            .arg(cutoff)
            .arg(if self.archive.is_some() { "1" } else { "0" })
            .arg(self.archive.as_ref().map_or(0, |f| f.max_lag))
            .arg(max_members)
            .arg(msg_ids[0])
            .arg(msg_ids[1])
            .arg(if routes { "1" } else { "0" })
            .arg(self.push_max);
        for a in extra {
            inv.arg(a);
        }
        if let Some(client_id) = client_id {
            inv.arg(client_id);
        }
        let reply: Value = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        as_array(reply)
    }

    /// Reads group.lua's answer; `Err(outcome)` for a refusal.
    fn group_reply(parts: Vec<Value>, with_routes: bool) -> Result<GroupReply, StoreError> {
        let mut parts = parts.into_iter();
        let tag = as_string(&parts.next().ok_or_else(|| corrupt("empty group reply"))?)?;
        let mut next = || parts.next().ok_or_else(|| corrupt("short group reply"));
        match tag.as_str() {
            "ok" => {}
            "not_found" => return Ok(Err(GroupOutcome::NotFound)),
            "forbidden" => return Ok(Err(GroupOutcome::Forbidden(reason(&as_string(&next()?)?)))),
            "invalid" => return Ok(Err(GroupOutcome::Invalid(reason(&as_string(&next()?)?)))),
            "too_many" => return Ok(Err(GroupOutcome::TooMany)),
            "lag" => {
                let lag = as_u64(&next()?)?;
                return Err(StoreError::Unavailable(format!(
                    "the archive is {lag} messages behind; sends wait for it to catch up"
                )));
            }
            other => return Err(corrupt(format!("unknown group outcome {other}"))),
        }
        let info = as_array(next()?)?;
        let members = as_array(next()?)?
            .iter()
            .map(as_string)
            .collect::<Result<Vec<_>, _>>()?;
        let presence = as_array(next()?)?;
        let push_dropped = as_u64(&next()?)?;
        let _ = next;
        let routes = if with_routes {
            let mut r: Routes = Vec::new();
            for pair in presence.chunks(2) {
                let [user, nodes] = pair else {
                    return Err(corrupt("odd presence list"));
                };
                r.push((as_string(user)?, nodes_from_value(nodes.clone())?));
            }
            Some(r)
        } else {
            None
        };
        let mut stored = Vec::new();
        for m in parts {
            let mut pair = as_array(m)?.into_iter();
            let msg = maybe_message(pair.next().ok_or_else(|| corrupt("no message"))?)?
                .ok_or_else(|| corrupt("stored message missing"))?;
            let inboxes = inboxes(pair.next().ok_or_else(|| corrupt("no inboxes"))?)?;
            stored.push(GroupStored {
                msg,
                inboxes,
                duplicate: false,
                routes: None,
                // A send stores one message: the drops are its.
                push_dropped,
            });
        }
        let view = match info.as_slice() {
            [name, owner, created] => Some(GroupView {
                id: String::new(),
                name: as_string(name)?,
                owner: as_string(owner)?,
                members,
                created: as_u64(created)?,
            }),
            _ => None,
        };
        Ok(Ok((view, stored, routes)))
    }

    pub(super) async fn change_group(
        &self,
        c: GroupChange,
        routes: bool,
    ) -> Result<GroupOutcome<GroupChanged>, StoreError> {
        let (op, extra) = match &c.op {
            GroupOp::Create { name, members } => {
                let mut v = vec![name.clone()];
                v.extend(members.iter().cloned());
                ("create", v)
            }
            GroupOp::Add(users) => ("add", users.clone()),
            GroupOp::Remove(users) => ("remove", users.clone()),
            GroupOp::Leave => ("leave", vec![]),
        };
        let parts = self
            .run_group(GroupCall {
                op,
                group: &c.group,
                actor: &c.actor,
                ts: c.ts,
                msg_ids: [&c.msg_ids[0], &c.msg_ids[1]],
                client_id: None,
                max_members: c.max_members,
                routes,
                extra,
            })
            .await?;
        Ok(match Self::group_reply(parts, routes)? {
            Ok((view, messages, routes)) => GroupOutcome::Done(GroupChanged {
                group: view.map(|mut v| {
                    v.id = c.group.clone();
                    v
                }),
                messages,
                routes,
            }),
            Err(refusal) => refused(refusal),
        })
    }

    pub(super) async fn send_group(
        &self,
        new: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<GroupOutcome<GroupStored>, StoreError> {
        let group = new.group.clone().unwrap_or_default();
        let media = match &new.media {
            Some(m) => serde_json::to_string(m).map_err(corrupt)?,
            None => String::new(),
        };
        let extra = vec![
            new.kind.as_str().to_owned(),
            new.body.clone(),
            media,
            if new.kind == Kind::Voice { "1" } else { "0" }.to_owned(),
        ];
        let parts = self
            .run_group(GroupCall {
                op: "send",
                group: &group,
                actor: &new.from,
                ts: new.ts,
                msg_ids: [&new.id, ""],
                client_id: Some(client_id),
                max_members: 0,
                routes,
                extra,
            })
            .await?;
        if parts
            .first()
            .and_then(|t| as_string(t).ok())
            .is_some_and(|t| t == "dup")
        {
            let first = parts
                .into_iter()
                .nth(1)
                .ok_or_else(|| corrupt("dup without message"))?;
            let msg = match maybe_message(first)? {
                Some(m) => m,
                None => {
                    let id = self.client_id_message(&new.from, client_id, new.ts).await?;
                    self.archived_message(&id)
                        .await?
                        .ok_or_else(|| corrupt(format!("message {id} is nowhere")))?
                }
            };
            return Ok(GroupOutcome::Done(GroupStored {
                msg,
                inboxes: vec![],
                duplicate: true,
                routes: None,
                push_dropped: 0,
            }));
        }
        Ok(match Self::group_reply(parts, routes)? {
            Ok((_, mut stored, routes)) => {
                let mut one = stored
                    .pop()
                    .ok_or_else(|| corrupt("group send stored nothing"))?;
                one.routes = routes;
                GroupOutcome::Done(one)
            }
            Err(refusal) => refused(refusal),
        })
    }

    pub(super) async fn group_view(&self, id: &str) -> Result<Option<GroupView>, StoreError> {
        let (info, members): (HashMap<String, String>, Vec<String>) = ::redis::pipe()
            .hgetall(self.keys.group(id))
            .zrange(self.keys.group_members(id), 0, -1)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if info.is_empty() {
            return Ok(None);
        }
        let get = |f: &str| {
            info.get(f)
                .cloned()
                .ok_or_else(|| corrupt(format!("group without {f}")))
        };
        Ok(Some(GroupView {
            id: id.to_owned(),
            name: get("name")?,
            owner: get("owner")?,
            members,
            created: get("created")?
                .parse()
                .map_err(|_| corrupt("group created is not a number"))?,
        }))
    }

    pub(super) async fn list_conversations(
        &self,
        user: &str,
        before: u64,
        limit: u64,
    ) -> Result<ConversationPage, StoreError> {
        let k = &self.keys;
        let reply: Value = self
            .scripts
            .conversations
            .key(k.convs(user))
            .key(k.unread(user))
            .key(k.read_marks(user))
            .arg(user)
            .arg(before)
            .arg(limit)
            .arg(k.prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut parts = as_array(reply)?.into_iter();
        let more = as_u64(&parts.next().ok_or_else(|| corrupt("empty conversations"))?)? == 1;
        let rest: Vec<Value> = parts.collect();
        let mut items = Vec::new();
        let mut missing: Vec<(usize, (String, u64))> = Vec::new();
        for chunk in rest.chunks(9) {
            let [
                conv,
                updated,
                seq,
                fields,
                unread,
                read,
                peer,
                peer_read,
                name,
            ] = chunk
            else {
                return Err(corrupt("conversation item has the wrong length"));
            };
            let conv = as_string(conv)?;
            let seq = as_u64(seq)?;
            let last = maybe_message(fields.clone())?;
            let peer = as_string(peer)?;
            let name = as_string(name)?;
            let group = crate::protocol::conv_group(&conv).map(|g| GroupName {
                id: g.to_owned(),
                name,
            });
            if last.is_none() {
                missing.push((items.len(), (conv.clone(), seq)));
            }
            let dm = group.is_none();
            items.push((
                ConversationItem {
                    conv,
                    with: dm.then(|| peer.clone()),
                    group,
                    last: last.unwrap_or_else(placeholder_message),
                    unread: as_u64(unread)?,
                    read_seq: as_u64(read)?,
                    peer_read_seq: if dm { Some(as_u64(peer_read)?) } else { None },
                    updated: as_u64(updated)?,
                },
                seq,
            ));
        }
        if !missing.is_empty() {
            let keys: Vec<(String, u64)> = missing.iter().map(|(_, k)| k.clone()).collect();
            let mut found: HashMap<(String, u64), Message> = HashMap::new();
            for m in self.sql()?.by_keys(&keys).await? {
                found.insert((m.conv.clone(), m.seq), m);
            }
            for (slot, key) in missing {
                items[slot].0.last = found.remove(&key).ok_or_else(|| {
                    corrupt(format!("message {} of {} is in no tier", key.1, key.0))
                })?;
            }
        }
        Ok(ConversationPage {
            items: items.into_iter().map(|(i, _)| i).collect(),
            more,
        })
    }

    pub(super) async fn recall_message(
        &self,
        user: &str,
        msg_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<RecallOutcome, StoreError> {
        let mut parts = self
            .run_recall(user, msg_id, now_ms, window_ms, None)
            .await?
            .into_iter();
        let tag = as_string(&parts.next().ok_or_else(|| corrupt("empty recall reply"))?)?;
        Ok(match tag.as_str() {
            "recalled" => {
                let fields = as_fields(parts.next().ok_or_else(|| corrupt("no message"))?)?;
                let msg = super::decode::message_from_fields(fields)?;
                let inboxes = inboxes(parts.next().ok_or_else(|| corrupt("no inboxes"))?)?;
                RecallOutcome::Recalled {
                    event: recalled_event(&msg, user),
                    msg: Box::new(msg),
                    inboxes,
                }
            }
            "archived" => {
                self.recall_archived(user, msg_id, now_ms, window_ms)
                    .await?
            }
            "forbidden" => RecallOutcome::Forbidden,
            "already" => RecallOutcome::AlreadyRecalled,
            "too_late" => RecallOutcome::TooLate,
            other => return Err(corrupt(format!("unknown recall outcome {other}"))),
        })
    }
}

impl RedisStore {
    /// Runs recall.lua; with `archived` (conv, group, receiver of a
    /// message only SQL holds), only appends the event entries.
    async fn run_recall(
        &self,
        user: &str,
        msg_id: &str,
        now_ms: u64,
        window_ms: u64,
        archived: Option<&Message>,
    ) -> Result<Vec<Value>, StoreError> {
        let cutoff = now_ms.saturating_sub(self.retention.max_age_ms);
        let reply: Value = self
            .scripts
            .recall
            .key(self.keys.msg(msg_id))
            .key(self.keys.archive_stream())
            .arg(user)
            .arg(msg_id)
            .arg(now_ms)
            .arg(window_ms)
            .arg(self.keys.prefix())
            .arg(self.retention.max_entries)
            .arg(cutoff)
            .arg(archived.map_or("", |m| m.conv.as_str()))
            .arg(archived.and_then(|m| m.group.as_deref()).unwrap_or(""))
            .arg(archived.map_or("", |m| m.to.as_str()))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        as_array(reply)
    }

    /// Recall of a message that left Redis (a recall window longer than
    /// the hot window): checked and emptied in SQL, then the event
    /// entries appended in Redis.
    async fn recall_archived(
        &self,
        user: &str,
        msg_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<RecallOutcome, StoreError> {
        if self.archive.is_none() {
            return Ok(RecallOutcome::NotFound);
        }
        let Some(mut msg) = self.archived_message(msg_id).await? else {
            return Ok(RecallOutcome::NotFound);
        };
        if let Some(refusal) = recall_refusal(&msg, user, now_ms, window_ms) {
            return Ok(refusal);
        }
        self.sql()?.recall(msg_id).await?;
        msg.recall();
        let mut parts = self
            .run_recall(user, msg_id, now_ms, window_ms, Some(&msg))
            .await?
            .into_iter();
        let tag = as_string(&parts.next().ok_or_else(|| corrupt("empty recall reply"))?)?;
        if tag != "events" {
            return Err(corrupt(format!(
                "recall of an archived message answered {tag}"
            )));
        }
        let inboxes = inboxes(parts.next().ok_or_else(|| corrupt("no inboxes"))?)?;
        Ok(RecallOutcome::Recalled {
            event: recalled_event(&msg, user),
            msg: Box::new(msg),
            inboxes,
        })
    }
}

fn refused<T>(r: GroupOutcome<()>) -> GroupOutcome<T> {
    match r {
        GroupOutcome::Done(()) | GroupOutcome::NotFound => GroupOutcome::NotFound,
        GroupOutcome::Forbidden(w) => GroupOutcome::Forbidden(w),
        GroupOutcome::TooMany => GroupOutcome::TooMany,
        GroupOutcome::Invalid(w) => GroupOutcome::Invalid(w),
    }
}
