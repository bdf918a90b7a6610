//! Groups, the conversation list and recall in the in-memory store: the
//! same rules as the Redis scripts (group.lua, conversations.lua,
//! recall.lua), under the one mutex.
//!
//! Each operation here reads the state, may await (the archive), then
//! writes: they run one at a time (`group_ops`), and with an archive also
//! under the write-through's send lock, so nothing that assigns a `seq`
//! or changes members comes between. A change is planned under the
//! state's mutex, written to SQL, then applied.

use std::collections::HashMap;

use super::*;
use crate::protocol::{conv_group, group_conv};

/// What a membership change stores, worked out before anything changes.
struct Plan {
    /// The group after the change; `None` once the last member left.
    group: Option<GroupState>,
    /// Messages (seq assigned) and who gets each.
    messages: Vec<(Message, Vec<String>)>,
}

fn system(c: &GroupChange, i: usize, seq: u64, event: &str, users: Vec<String>) -> Message {
    NewMessage {
        id: c.msg_ids[i].clone(),
        conv: group_conv(&c.group),
        from: c.actor.clone(),
        to: String::new(),
        group: Some(c.group.clone()),
        kind: Kind::System,
        body: String::new(),
        media: None,
        ts: c.ts,
        system: Some(SystemEvent {
            event: event.to_owned(),
            by: c.actor.clone(),
            users,
        }),
    }
    .into_message(seq)
}

impl State {
    /// Decides a membership change; `last` is the group conversation's last `seq`.
    fn plan(&self, c: &GroupChange, last: u64) -> GroupOutcome<Plan> {
        let existing = self.groups.get(&c.group);
        let mut g = match (&c.op, existing) {
            (GroupOp::Create { name, members }, _) => {
                let mut all = vec![c.actor.clone()];
                all.extend(members.iter().filter(|m| **m != c.actor).cloned());
                if all.len() > c.max_members {
                    return GroupOutcome::TooMany;
                }
                let others = all[1..].to_vec();
                let g = GroupState {
                    name: name.clone(),
                    owner: c.actor.clone(),
                    created: c.ts,
                    members: all.clone(),
                    left: HashMap::new(),
                };
                let msg = system(c, 0, last + 1, "created", others);
                return GroupOutcome::Done(Plan {
                    group: Some(g),
                    messages: vec![(msg, all)],
                });
            }
            (_, None) => return GroupOutcome::NotFound,
            (_, Some(g)) => g.clone(),
        };
        let before = g.members.clone();
        match &c.op {
            GroupOp::Create { .. } => unreachable!("handled above"),
            GroupOp::Add(users) => {
                if g.owner != c.actor {
                    return GroupOutcome::Forbidden("only the group's owner may add members");
                }
                let new: Vec<String> = users.iter().filter(|u| !g.is_member(u)).cloned().collect();
                if g.members.len() + new.len() > c.max_members {
                    return GroupOutcome::TooMany;
                }
                if new.is_empty() {
                    return GroupOutcome::Done(Plan {
                        group: Some(g),
                        messages: vec![],
                    });
                }
                for u in &new {
                    g.left.remove(u);
                    g.members.push(u.clone());
                }
                let msg = system(c, 0, last + 1, "added", new);
                let to = g.members.clone();
                GroupOutcome::Done(Plan {
                    group: Some(g),
                    messages: vec![(msg, to)],
                })
            }
            GroupOp::Remove(users) => {
                if g.owner != c.actor {
                    return GroupOutcome::Forbidden("only the group's owner may remove members");
                }
                if users.contains(&g.owner) {
                    return GroupOutcome::Invalid("the owner leaves with group_leave");
                }
                let gone: Vec<String> = users.iter().filter(|u| g.is_member(u)).cloned().collect();
                if gone.is_empty() {
                    return GroupOutcome::Done(Plan {
                        group: Some(g),
                        messages: vec![],
                    });
                }
                g.members.retain(|m| !gone.contains(m));
                for u in &gone {
                    g.left.insert(u.clone(), last + 1);
                }
                let msg = system(c, 0, last + 1, "removed", gone);
                GroupOutcome::Done(Plan {
                    group: Some(g),
                    messages: vec![(msg, before)],
                })
            }
            GroupOp::Leave => {
                if !g.is_member(&c.actor) {
                    return GroupOutcome::Forbidden("not a member of this group");
                }
                g.members.retain(|m| *m != c.actor);
                g.left.insert(c.actor.clone(), last + 1);
                let mut messages = vec![(
                    system(c, 0, last + 1, "left", vec![c.actor.clone()]),
                    before,
                )];
                if g.members.is_empty() {
                    return GroupOutcome::Done(Plan {
                        group: None,
                        messages,
                    });
                }
                if g.owner == c.actor {
                    g.owner = g.members[0].clone();
                    messages.push((
                        system(c, 1, last + 2, "owner", vec![g.owner.clone()]),
                        g.members.clone(),
                    ));
                }
                GroupOutcome::Done(Plan {
                    group: Some(g),
                    messages,
                })
            }
        }
    }

    /// Stores a group message: the conversation, each recipient's inbox,
    /// unread counts (not for system messages nor the sender), lists.
    fn apply_group(&mut self, msg: Message, to: &[String], retention: Retention) -> GroupStored {
        self.convs
            .entry(msg.conv.clone())
            .or_default()
            .ids
            .push_back(msg.id.clone());
        self.messages.insert(msg.id.clone(), msg.clone());
        let mut inboxes = Vec::with_capacity(to.len());
        for u in to {
            let pts = self.append_inbox(u, &msg, msg.ts, retention);
            inboxes.push((u.clone(), pts));
            if *u != msg.from && msg.kind != Kind::System {
                *self
                    .unread
                    .entry(u.clone())
                    .or_default()
                    .entry(msg.conv.clone())
                    .or_default() += 1;
            }
            self.touch_conv(u, &msg.conv, msg.ts);
        }
        GroupStored {
            msg,
            inboxes,
            duplicate: false,
            routes: None,
            push_dropped: 0,
        }
    }

    /// Where the sessions of these users are, each once.
    fn routes_of_users<'a>(&self, users: impl Iterator<Item = &'a String>) -> Routes {
        let mut out: Routes = Vec::new();
        for u in users {
            if !out.iter().any(|(seen, _)| seen == u) {
                out.push((u.clone(), self.nodes_of(u)));
            }
        }
        out
    }

    fn record_client_id(
        &mut self,
        from: &str,
        client_id: &str,
        id: &str,
        pts: u64,
        ttl: u64,
        now: u64,
    ) {
        let key = (from.to_owned(), client_id.to_owned());
        self.client_ids.insert(
            key.clone(),
            FirstSend {
                id: id.to_owned(),
                sender_pts: pts,
                receiver_pts: None,
            },
        );
        self.client_id_expiry
            .entry(now + ttl)
            .or_default()
            .push(key);
    }
}

impl MemoryStore {
    /// Sets a conversation's base before its first message in this run
    /// (its earlier messages are in the archive).
    fn start_conv(st: &mut State, conv: &str, first_seq: u64) {
        let c = st.convs.entry(conv.to_owned()).or_default();
        if c.ids.is_empty() {
            c.base = first_seq - 1;
        }
    }

    pub(super) async fn change_group(
        &self,
        c: GroupChange,
        routes: bool,
    ) -> Result<GroupOutcome<GroupChanged>, StoreError> {
        let _group_ops = self.group_ops.lock().await;
        let _one_at_a_time = match &self.archive {
            Some(a) => Some(a.sends.lock().await),
            None => None,
        };
        let conv = group_conv(&c.group);
        let last = self.last_seq(&conv).await?;
        let plan = match self.lock().plan(&c, last) {
            GroupOutcome::Done(p) => p,
            GroupOutcome::NotFound => return Ok(GroupOutcome::NotFound),
            GroupOutcome::Forbidden(w) => return Ok(GroupOutcome::Forbidden(w)),
            GroupOutcome::TooMany => return Ok(GroupOutcome::TooMany),
            GroupOutcome::Invalid(w) => return Ok(GroupOutcome::Invalid(w)),
        };
        if let Some(a) = &self.archive {
            let msgs: Vec<Message> = plan.messages.iter().map(|(m, _)| m.clone()).collect();
            a.sql.insert(&msgs).await?;
        }
        let mut st = self.lock();
        let view = plan.group.as_ref().map(|g| g.view(&c.group));
        let now_members: std::collections::HashSet<String> = plan
            .group
            .iter()
            .flat_map(|g| g.members.iter().cloned())
            .collect();
        let before = match plan.group {
            Some(g) => st.groups.insert(c.group.clone(), g),
            None => st.groups.remove(&c.group),
        };
        // A member who was removed or left cannot `read` the group: its
        // unread count goes (as in group.lua).
        for u in before.iter().flat_map(|g| &g.members) {
            if !now_members.contains(u)
                && let Some(counts) = st.unread.get_mut(u)
            {
                counts.remove(&conv);
            }
        }
        let mut messages = Vec::new();
        for (msg, to) in plan.messages {
            Self::start_conv(&mut st, &conv, msg.seq);
            messages.push(st.apply_group(msg, &to, self.retention));
        }
        if let Some(a) = &self.archive {
            let cutoff = c.ts.saturating_sub(a.hot_ms);
            st.trim(&conv, a.hot_messages, cutoff);
        }
        let routes = routes.then(|| {
            st.routes_of_users(
                messages
                    .iter()
                    .flat_map(|m| m.inboxes.iter().map(|(u, _)| u)),
            )
        });
        Ok(GroupOutcome::Done(GroupChanged {
            group: view,
            messages,
            routes,
        }))
    }

    pub(super) async fn send_group(
        &self,
        new: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<GroupOutcome<GroupStored>, StoreError> {
        let gid = new.group.clone().unwrap_or_default();
        let _group_ops = self.group_ops.lock().await;
        let _one_at_a_time = match &self.archive {
            Some(a) => Some(a.sends.lock().await),
            None => None,
        };
        let check = |st: &mut State| -> Result<Option<GroupOutcome<GroupStored>>, StoreError> {
            let Some(g) = st.groups.get(&gid) else {
                return Ok(Some(GroupOutcome::NotFound));
            };
            if !g.is_member(&new.from) {
                return Ok(Some(GroupOutcome::Forbidden(
                    "only members may write to a group",
                )));
            }
            match st.duplicate(&new.from, client_id, new.ts, false) {
                None => Ok(None),
                Some(Ok(d)) => Ok(Some(GroupOutcome::Done(GroupStored {
                    msg: d.msg,
                    inboxes: vec![],
                    duplicate: true,
                    routes: None,
                    push_dropped: 0,
                }))),
                Some(Err(e)) => Err(e),
            }
        };
        let checked = check(&mut self.lock());
        match checked {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(_) => {
                // The first message left memory for the archive.
                let key = (new.from.clone(), client_id.to_owned());
                let first = self.lock().client_ids.get(&key).cloned();
                let first =
                    first.ok_or_else(|| StoreError::Corrupt("client id vanished".into()))?;
                let msg = self
                    .sql()?
                    .by_ids(&[first.id.as_str()])
                    .await?
                    .into_iter()
                    .next();
                let msg = msg.ok_or_else(|| {
                    StoreError::Corrupt(format!("message {} is nowhere", first.id))
                })?;
                return Ok(GroupOutcome::Done(GroupStored {
                    msg,
                    inboxes: vec![],
                    duplicate: true,
                    routes: None,
                    push_dropped: 0,
                }));
            }
        }
        let seq = self.last_seq(&new.conv).await? + 1;
        let msg = new.into_message(seq);
        if let Some(a) = &self.archive {
            a.sql.insert(std::slice::from_ref(&msg)).await?;
        }
        let mut st = self.lock();
        let members = st
            .groups
            .get(&gid)
            .map(|g| g.members.clone())
            .unwrap_or_default();
        Self::start_conv(&mut st, &msg.conv, seq);
        let (from, id, ts, conv) = (msg.from.clone(), msg.id.clone(), msg.ts, msg.conv.clone());
        let mut stored = st.apply_group(msg, &members, self.retention);
        if routes {
            stored.routes = Some(st.routes_of_users(members.iter()));
        }
        stored.push_dropped = self.queue_pushes(&mut st, members.iter(), &stored.msg);
        let pts = stored
            .inboxes
            .iter()
            .find(|(u, _)| *u == from)
            .map_or(0, |(_, p)| *p);
        st.record_client_id(&from, client_id, &id, pts, self.client_id_ttl_ms, ts);
        if let Some(a) = &self.archive {
            st.trim(&conv, a.hot_messages, ts.saturating_sub(a.hot_ms));
        }
        Ok(GroupOutcome::Done(stored))
    }

    pub(super) fn group_view(&self, id: &str) -> Option<GroupView> {
        self.lock().groups.get(id).map(|g| g.view(id))
    }

    pub(super) async fn list_conversations(
        &self,
        user: &str,
        before: u64,
        limit: u64,
    ) -> Result<ConversationPage, StoreError> {
        // (item without `last`, where its last message is: conv and seq)
        let mut items: Vec<(ConversationItem, Option<Message>, (String, u64))> = Vec::new();
        let more;
        {
            let st = self.lock();
            let Some(list) = st.conv_lists.get(user) else {
                return Ok(ConversationPage::default());
            };
            let mut convs: Vec<(&String, u64)> = list
                .iter()
                .filter(|(_, t)| **t < before)
                .map(|(c, t)| (c, *t))
                .collect();
            convs.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            more = convs.len() as u64 > limit;
            convs.truncate(limit as usize);
            let read = st.read.get(user);
            let unread = st.unread.get(user);
            for (conv, updated) in convs {
                let last_seq = st.convs.get(conv).map_or(0, Conv::last);
                let read_seq = read.and_then(|r| r.get(conv)).copied().unwrap_or(0);
                let (with, group, seq, unread_key, peer_read) = if let Some(gid) = conv_group(conv)
                {
                    let Some(g) = st.groups.get(gid) else {
                        continue;
                    };
                    let seq = if g.is_member(user) {
                        last_seq
                    } else {
                        match g.left.get(user) {
                            Some(s) => *s,
                            None => continue,
                        }
                    };
                    let name = GroupName {
                        id: gid.to_owned(),
                        name: g.name.clone(),
                    };
                    (None, Some(name), seq, conv.clone(), None)
                } else {
                    let peer = dm_peer(conv, user).to_owned();
                    let peer_read = st
                        .read
                        .get(&peer)
                        .and_then(|r| r.get(conv))
                        .copied()
                        .unwrap_or(0);
                    (Some(peer.clone()), None, last_seq, peer, Some(peer_read))
                };
                let item = ConversationItem {
                    conv: conv.clone(),
                    with,
                    group,
                    last: placeholder_message(),
                    unread: unread
                        .and_then(|u| u.get(&unread_key))
                        .copied()
                        .unwrap_or(0),
                    read_seq,
                    peer_read_seq: peer_read,
                    updated,
                };
                let held = st.at_seq(conv, seq).cloned();
                items.push((item, held, (conv.clone(), seq)));
            }
        }
        let missing: Vec<(String, u64)> = items
            .iter()
            .filter(|(_, m, _)| m.is_none())
            .map(|(_, _, k)| k.clone())
            .collect();
        let mut found: HashMap<(String, u64), Message> = HashMap::new();
        if !missing.is_empty() {
            for m in self.sql()?.by_keys(&missing).await? {
                found.insert((m.conv.clone(), m.seq), m);
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for (mut item, held, key) in items {
            item.last = match held.or_else(|| found.remove(&key)) {
                Some(m) => m,
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "message {} of {} is in no tier",
                        key.1, key.0
                    )));
                }
            };
            out.push(item);
        }
        Ok(ConversationPage { items: out, more })
    }

    pub(super) async fn recall_message(
        &self,
        user: &str,
        msg_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<RecallOutcome, StoreError> {
        let _group_ops = self.group_ops.lock().await;
        let _one_at_a_time = match &self.archive {
            Some(a) => Some(a.sends.lock().await),
            None => None,
        };
        let held = self.lock().messages.get(msg_id).cloned();
        let in_memory = held.is_some();
        let msg = match (held, &self.archive) {
            (Some(m), _) => m,
            (None, None) => return Ok(RecallOutcome::NotFound),
            // Past the hot window: recalled in SQL alone.
            (None, Some(a)) => match a.sql.by_ids(&[msg_id]).await?.into_iter().next() {
                Some(m) => m,
                None => return Ok(RecallOutcome::NotFound),
            },
        };
        if let Some(refusal) = recall_refusal(&msg, user, now_ms, window_ms) {
            return Ok(refusal);
        }
        // SQL first: a recall SQL refuses changes nothing.
        if let Some(a) = &self.archive {
            a.sql.recall(msg_id).await?;
        }
        let mut st = self.lock();
        let mut participants: Vec<String> = match &msg.group {
            None => msg.dm_users().into_iter().map(str::to_owned).collect(),
            Some(g) => st
                .groups
                .get(g)
                .map(|g| g.members.clone())
                .unwrap_or_default(),
        };
        if !participants.contains(&msg.from) {
            participants.push(msg.from.clone());
        }
        let msg = match st.messages.get_mut(msg_id) {
            Some(m) if m.recalled == Some(true) => return Ok(RecallOutcome::AlreadyRecalled),
            Some(m) => {
                m.recall();
                m.clone()
            }
            None if in_memory => {
                return Err(StoreError::Corrupt("message vanished during recall".into()));
            }
            None => {
                let mut m = msg;
                m.recall();
                m
            }
        };
        let event = recalled_event(&msg, user);
        let inboxes = participants
            .into_iter()
            .map(|u| {
                let pts = st.append_item(&u, &msg, Some(event.clone()), now_ms, self.retention);
                (u, pts)
            })
            .collect();
        Ok(RecallOutcome::Recalled {
            msg: Box::new(msg),
            event,
            inboxes,
        })
    }
}

/// The other user of a one-to-one conversation `dm:a:b`.
pub(super) fn dm_peer<'a>(conv: &'a str, user: &str) -> &'a str {
    let rest = conv.strip_prefix("dm:").unwrap_or(conv);
    match rest.split_once(':') {
        Some((a, b)) if a == user => b,
        Some((a, _)) => a,
        None => rest,
    }
}
