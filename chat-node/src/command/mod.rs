//! What an authenticated session can ask for, one file per command. Each
//! `apply` checks what the user may do, changes the store, and returns the
//! direct reply plus the deliveries to other sessions, which the connection
//! hands out after it has written the reply.

mod conversations;
mod group;
mod history;
mod page;
mod played;
mod read;
mod recall;
mod send;
mod sync;
mod typing;
mod unread;

use std::sync::Arc;

use crate::bus::Delivery;
use crate::node::Node;
use crate::protocol::client::{Command, Request};
use crate::protocol::server::GroupView;
use crate::protocol::server::{MsgFrames, ServerFrame};
use crate::protocol::{ErrorCode, ProtoError};
use crate::store::{GroupOp, GroupOutcome, Routes, StoreError};

/// Whom a request is about: a peer or a group (the parser lets through
/// exactly one of the two).
#[derive(Debug, Clone)]
pub enum Peer {
    User(String),
    Group(String),
}

impl Peer {
    fn of(user: Option<String>, group: Option<String>) -> Peer {
        match (user, group) {
            (_, Some(g)) => Peer::Group(g),
            (Some(u), None) => Peer::User(u),
            (None, None) => Peer::User(String::new()),
        }
    }
}

/// The group `id` if `user` is a member: `not_found` for no such group,
/// `forbidden` for a non-member (a removed one included).
async fn member_of(node: &Node, user: &str, id: &str) -> Result<GroupView, Failure> {
    match node.store.group(id).await? {
        None => Err(Failure::new(ErrorCode::NotFound, format!("no group {id}"))),
        Some(g) if g.members.iter().any(|m| m == user) => Ok(g),
        Some(_) => Err(Failure::new(
            ErrorCode::Forbidden,
            "only members of the group may do this",
        )),
    }
}

/// A refused group request as the error the client gets.
fn group_refusal<T>(outcome: GroupOutcome<T>, node: &Node, group: &str) -> Result<T, Failure> {
    match outcome {
        GroupOutcome::Done(v) => Ok(v),
        GroupOutcome::NotFound => Err(Failure::new(
            ErrorCode::NotFound,
            format!("no group {group}"),
        )),
        GroupOutcome::Forbidden(why) => Err(Failure::new(ErrorCode::Forbidden, why)),
        GroupOutcome::TooMany => Err(Failure::new(
            ErrorCode::BadRequest,
            format!(
                "a group has at most {} members, owner included",
                node.settings.max_group_members
            ),
        )),
        GroupOutcome::Invalid(why) => Err(Failure::new(ErrorCode::BadRequest, why)),
    }
}

/// `msg` frames of a group message, one per recipient with their own
/// `pts`, for every session but the requesting one.
fn group_msgs(s: &SessionCtx, stored: &crate::store::GroupStored) -> Vec<Delivery> {
    let frames = MsgFrames::new(&stored.msg);
    stored
        .inboxes
        .iter()
        .map(|(user, pts)| delivery(user, frames.frame(*pts), except_mine(s, user), true))
        .collect()
}

/// The requesting session, for deliveries to its own user only (a
/// session id names one session of one user).
fn except_mine<'a>(s: &'a SessionCtx, user: &str) -> Option<&'a Arc<str>> {
    (*s.user == *user).then_some(&s.session)
}

/// The same frame for every session of every member but the requesting one.
fn to_members(s: &SessionCtx, members: &[String], frame: String) -> Vec<Delivery> {
    members
        .iter()
        .map(|m| delivery(m, frame.clone(), except_mine(s, m), false))
        .collect()
}

pub use typing::TypingLimit;

/// The authenticated session a command runs for.
#[derive(Debug, Clone)]
pub struct SessionCtx {
    pub user: Arc<str>,
    pub session: Arc<str>,
    /// When this session last sent `typing`, per conversation.
    pub typing: Arc<TypingLimit>,
}

/// A command's result: the reply for the requesting session, and frames for
/// other sessions.
#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: String,
    pub deliveries: Vec<Delivery>,
    /// Where the users of `deliveries` have sessions, when the command
    /// already read it (else the node looks it up before publishing).
    pub routes: Option<Routes>,
}

impl Outcome {
    fn reply(reply: String) -> Self {
        Outcome {
            reply,
            deliveries: Vec::new(),
            routes: None,
        }
    }
}

/// A refused command: the error, and the client message id to echo.
#[derive(Debug)]
pub struct Failure {
    pub error: ProtoError,
    pub id: Option<String>,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            error: ProtoError::new(code, message),
            id: None,
        }
    }
    fn with_id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                // After a timeout the write may have happened: say only what
                // is known. A retry with the same id is safe either way.
                Failure::new(
                    ErrorCode::Unavailable,
                    "the message store did not answer in time; retry with the same id",
                )
            }
            StoreError::Corrupt(detail) => {
                tracing::error!(error = %detail, "store answered unexpectedly");
                Failure::new(
                    ErrorCode::Internal,
                    "internal error; nothing partial was stored",
                )
            }
        }
    }
}

/// The `error` frame for a refusal.
pub fn error_frame(error: &ProtoError, rid: Option<&str>, id: Option<&str>) -> String {
    ServerFrame::Error {
        code: error.code,
        message: &error.message,
        rid,
        id,
    }
    .to_json()
}

/// Runs one request of an authenticated session.
pub async fn dispatch(node: &Node, s: &SessionCtx, req: Request) -> Outcome {
    let rid = req.rid.as_deref();
    let result = match req.command {
        Command::Send(r) => send::apply(node, s, r, rid).await,
        Command::Sync { after, limit } => sync::apply(node, s, after, limit, rid).await,
        Command::History {
            with,
            group,
            before,
            limit,
        } => history::apply(node, s, Peer::of(with, group), before, limit, rid).await,
        Command::Unread => unread::apply(node, s, rid).await,
        Command::Read { with, group, seq } => {
            read::apply(node, s, Peer::of(with, group), seq, rid).await
        }
        Command::Played { msg } => played::apply(node, s, &msg, rid).await,
        Command::GroupCreate { name, members } => group::create(node, s, name, members, rid).await,
        Command::GroupAdd { group, users } => {
            group::change(node, s, &group, GroupOp::Add(users), rid).await
        }
        Command::GroupRemove { group, users } => {
            group::change(node, s, &group, GroupOp::Remove(users), rid).await
        }
        Command::GroupLeave { group } => group::change(node, s, &group, GroupOp::Leave, rid).await,
        Command::GroupInfo { group } => group::info(node, s, &group, rid).await,
        Command::Conversations { before, limit } => {
            conversations::apply(node, s, before, limit, rid).await
        }
        Command::Typing { to, group } => typing::apply(node, s, Peer::of(to, group)).await,
        Command::Recall { msg } => recall::apply(node, s, &msg, rid).await,
        Command::Ping => Ok(Outcome::reply(ServerFrame::Pong { rid }.to_json())),
        Command::Connect { .. } => Err(Failure::new(
            ErrorCode::BadRequest,
            "this connection already has a session",
        )),
    };
    result.unwrap_or_else(|f| {
        node.metrics.error(f.error.code);
        Outcome::reply(error_frame(&f.error, rid, f.id.as_deref()))
    })
}

/// A frame for every session of `user` but `except`.
fn delivery(user: &str, frame: String, except: Option<&Arc<str>>, is_message: bool) -> Delivery {
    Delivery {
        user: user.to_owned(),
        frame: frame.into(),
        except: except.cloned(),
        message: is_message,
    }
}

/// The same frame for every session of both users but the requesting one.
fn to_both(s: &SessionCtx, peer: &str, frame: String) -> Vec<Delivery> {
    let mut out = vec![delivery(&s.user, frame.clone(), Some(&s.session), false)];
    if peer != &*s.user {
        out.push(delivery(peer, frame, None, false));
    }
    out
}
