//! What an authenticated session can ask for, one file per command. Each
//! `apply` checks what the user may do, changes the store, and returns the
//! direct reply plus the deliveries to other sessions, which the connection
//! hands out after it has written the reply.

mod history;
mod page;
mod played;
mod read;
mod send;
mod sync;
mod unread;

use std::sync::Arc;

use crate::bus::Delivery;
use crate::node::Node;
use crate::protocol::client::{Command, Request};
use crate::protocol::server::ServerFrame;
use crate::protocol::{ErrorCode, ProtoError};
use crate::store::{Routes, StoreError};

/// The authenticated session a command runs for.
#[derive(Debug, Clone)]
pub struct SessionCtx {
    pub user: Arc<str>,
    pub session: Arc<str>,
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
            before,
            limit,
        } => history::apply(node, s, &with, before, limit, rid).await,
        Command::Unread => unread::apply(node, s, rid).await,
        Command::Read { with, seq } => read::apply(node, s, &with, seq, rid).await,
        Command::Played { msg } => played::apply(node, s, &msg, rid).await,
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
