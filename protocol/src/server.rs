//! Frames the node sends. Each is serialized once and may be shared by many
//! sessions (a delivery to every device of a user).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ErrorCode, Message};

/// One inbox entry in a `synced` reply: a message, or (since 1.1) an
/// event about one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    pub pts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<InboxEvent>,
}

impl InboxEntry {
    pub fn message(pts: u64, msg: Message) -> Self {
        InboxEntry {
            pts,
            msg: Some(msg),
            event: None,
        }
    }
}

/// An inbox `event`: something that happened to a message the user has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEvent {
    /// `recalled`.
    #[serde(rename = "type")]
    pub kind: String,
    pub msg: String,
    pub conv: String,
    pub by: String,
}

/// A group as `group` and `group_info` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// Earliest joined first.
    pub members: Vec<String>,
    pub created: u64,
}

/// A group as a conversation list item names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupName {
    pub id: String,
    pub name: String,
}

/// One item of a `conversations` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationItem {
    pub conv: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupName>,
    pub last: Message,
    pub unread: u64,
    pub read_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_read_seq: Option<u64>,
    pub updated: u64,
}

/// Every frame the node sends, tagged by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Connected {
        user: &'a str,
        session: &'a str,
        node: &'a str,
        pts: u64,
        heartbeat_s: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Sent {
        id: &'a str,
        msg: &'a Message,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Msg {
        pts: u64,
        msg: &'a Message,
    },
    Synced {
        entries: &'a [InboxEntry],
        more: bool,
        pts: u64,
        /// Entries after `after` were dropped by retention: the oldest kept.
        #[serde(skip_serializing_if = "Option::is_none")]
        trimmed_to: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        with: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<&'a str>,
        messages: &'a [Message],
        more: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Unread {
        counts: &'a BTreeMap<String, u64>,
        /// Counts were left out to keep the reply within its byte budget
        /// (the largest are kept).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        more: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Ok {
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Receipt {
        conv: &'a str,
        reader: &'a str,
        seq: u64,
    },
    Played {
        msg: &'a str,
        conv: &'a str,
        by: &'a str,
    },
    Group {
        group: &'a GroupView,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Conversations {
        items: &'a [ConversationItem],
        more: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Typing {
        conv: &'a str,
        from: &'a str,
    },
    Recalled {
        pts: u64,
        msg: &'a str,
        conv: &'a str,
        by: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
    Reconnect {
        reason: &'a str,
        /// The node to go to (since 1.1), when the draining node knows one.
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<&'a str>,
    },
    Kicked {
        reason: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys,
        // no foreign Serialize impls.
        serde_json::to_string(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialize frame");
            r#"{"type":"error","code":"internal","message":"cannot serialize reply"}"#.to_owned()
        })
    }
}

/// One message's `msg` frames for many inboxes, which differ only in
/// `pts` (the members of a group): the message is serialized once and each
/// frame splices it, so a group of `n` members costs one serialization and
/// `n` copies, not `n` serializations (an event listing every member of a
/// large group would otherwise cost the square of its size). Each frame is
/// the text [`ServerFrame::Msg`] gives.
pub struct MsgFrames {
    msg: String,
}

impl MsgFrames {
    pub fn new(msg: &Message) -> Self {
        let msg = serde_json::to_string(msg).unwrap_or_else(|e| {
            // As in to_json: a Message always serializes.
            tracing::error!(error = %e, "cannot serialize message");
            "null".to_owned()
        });
        MsgFrames { msg }
    }

    /// The frame for the inbox position `pts`.
    pub fn frame(&self, pts: u64) -> String {
        const HEAD: &str = r#"{"type":"msg","pts":"#;
        const MSG: &str = r#","msg":"#;
        let pts = pts.to_string();
        let mut out =
            String::with_capacity(HEAD.len() + pts.len() + MSG.len() + self.msg.len() + 1);
        out.push_str(HEAD);
        out.push_str(&pts);
        out.push_str(MSG);
        out.push_str(&self.msg);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_frames_are_the_msg_frame() {
        let msg: Message = serde_json::from_value(serde_json::json!({
            "id": "01J", "conv": "g:g-1", "seq": 3, "from": "alice",
            "group": "g-1", "kind": "system", "body": "h\u{e9}llo \"you\"", "ts": 5,
            "system": {"event": "created", "by": "alice", "users": ["bob", "c\\d"]}
        }))
        .unwrap();
        let frames = MsgFrames::new(&msg);
        for pts in [0, 1, 42, u64::MAX] {
            assert_eq!(
                frames.frame(pts),
                ServerFrame::Msg { pts, msg: &msg }.to_json()
            );
        }
    }

    #[test]
    fn frames_carry_type_and_echo_rid() {
        assert_eq!(
            ServerFrame::Pong { rid: None }.to_json(),
            r#"{"type":"pong"}"#
        );
        assert_eq!(
            ServerFrame::Ok { rid: Some("r1") }.to_json(),
            r#"{"type":"ok","rid":"r1"}"#
        );
        let e = ServerFrame::Error {
            code: ErrorCode::BadRequest,
            message: "kind must be one of …",
            rid: Some("r-9"),
            id: Some("c-4"),
        };
        assert_eq!(
            e.to_json(),
            r#"{"type":"error","code":"bad_request","message":"kind must be one of …","rid":"r-9","id":"c-4"}"#
        );
        let mut counts = BTreeMap::new();
        counts.insert("bob".to_owned(), 3);
        assert_eq!(
            ServerFrame::Unread {
                counts: &counts,
                more: false,
                rid: None
            }
            .to_json(),
            r#"{"type":"unread","counts":{"bob":3}}"#
        );
    }
}
