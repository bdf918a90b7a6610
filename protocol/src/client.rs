//! Frames a client sends: parsed and validated into [`Request`]s, or refused
//! with the `bad_request` a client can act on. Unknown fields are ignored, and
//! so are fields a client has no right to set (such as `from`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::message::{Kind, Media};
use super::{ProtoError, valid_group_id, valid_user_id};

/// Limits that shape validation, from the node's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Most members of a group, owner included: no user list may be longer.
    pub max_group_members: usize,
}

impl Limits {
    /// A node's limits unless configured otherwise (chat-node's
    /// `CHAT_MAX_BODY_BYTES` and `CHAT_MAX_GROUP_MEMBERS` default to these).
    pub const DEFAULT: Limits = Limits {
        max_body_bytes: 4096,
        max_group_members: 500,
    };
}

/// Most bytes in `rid`, client message ids, `device` and server message ids.
pub const MAX_ID_BYTES: usize = 64;
/// Most bytes in a media URL.
pub const MAX_URL_BYTES: usize = 2048;
/// `sync` page size: default and most.
pub const SYNC_LIMIT: (u64, u64) = (100, 1000);
/// `history` page size: default and most.
pub const HISTORY_LIMIT: (u64, u64) = (50, 200);
/// `conversations` page size: default and most.
pub const CONVERSATIONS_LIMIT: (u64, u64) = (50, 200);
/// Most bytes in a group name.
pub const MAX_GROUP_NAME_BYTES: usize = 64;

/// One parsed client frame. Serializes to the frame [`parse`] reads (for
/// clients written in Rust, such as the load generator).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    /// Echoed in the direct reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    #[serde(flatten)]
    pub command: Command,
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    Connect {
        token: String,
        device: String,
    },
    Send(SendRequest),
    Sync {
        after: u64,
        limit: u64,
    },
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        with: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        before: Option<u64>,
        limit: u64,
    },
    Unread,
    Read {
        #[serde(skip_serializing_if = "Option::is_none")]
        with: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        seq: u64,
    },
    Played {
        msg: String,
    },
    Ping,
    GroupCreate {
        name: String,
        members: Vec<String>,
    },
    GroupAdd {
        group: String,
        users: Vec<String>,
    },
    GroupRemove {
        group: String,
        users: Vec<String>,
    },
    GroupLeave {
        group: String,
    },
    GroupInfo {
        group: String,
    },
    Conversations {
        before: Option<u64>,
        limit: u64,
    },
    Typing {
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Recall {
        msg: String,
    },
}

impl Command {
    /// The frame type, for logs and metrics.
    /// Every [`Command::name`], in the order of the enum (the metrics
    /// start a zero series for each, so a rate has a start).
    pub const NAMES: [&'static str; 16] = [
        "connect",
        "send",
        "sync",
        "history",
        "unread",
        "read",
        "played",
        "ping",
        "group_create",
        "group_add",
        "group_remove",
        "group_leave",
        "group_info",
        "conversations",
        "typing",
        "recall",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Command::Connect { .. } => "connect",
            Command::Send(_) => "send",
            Command::Sync { .. } => "sync",
            Command::History { .. } => "history",
            Command::Unread => "unread",
            Command::Read { .. } => "read",
            Command::Played { .. } => "played",
            Command::Ping => "ping",
            Command::GroupCreate { .. } => "group_create",
            Command::GroupAdd { .. } => "group_add",
            Command::GroupRemove { .. } => "group_remove",
            Command::GroupLeave { .. } => "group_leave",
            Command::GroupInfo { .. } => "group_info",
            Command::Conversations { .. } => "conversations",
            Command::Typing { .. } => "typing",
            Command::Recall { .. } => "recall",
        }
    }

    /// What the request costs in rate-limit tokens: one per frame, and for
    /// pages one more per 100 inbox entries or 50 messages asked for, so a
    /// client cannot have the node read 1000 entries for the price of a ping.
    pub fn cost(&self) -> u32 {
        match self {
            Command::Sync { limit, .. } => 1 + (*limit / 100) as u32,
            Command::History { limit, .. } | Command::Conversations { limit, .. } => {
                1 + (*limit / 50) as u32
            }
            // A membership change writes to every member's inbox.
            Command::GroupCreate { members: users, .. }
            | Command::GroupAdd { users, .. }
            | Command::GroupRemove { users, .. } => 1 + (users.len() / 50) as u32,
            _ => 1,
        }
    }
}

/// A validated `send`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendRequest {
    /// Client message id (idempotency key).
    pub id: String,
    /// The receiver; empty when `group` is set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// The group written to (since 1.1), instead of `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: Kind,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
}

/// A refused frame: the error, and what of the frame can still be echoed.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub rid: Option<String>,
    /// The client message id of a refused `send`, when it was a valid string.
    pub id: Option<String>,
    pub error: ProtoError,
}

/// Parses one text frame.
pub fn parse(text: &str, limits: &Limits) -> Result<Request, Rejected> {
    let reject = |rid: Option<String>, id: Option<String>, msg: String| Rejected {
        rid,
        id,
        error: ProtoError::bad_request(msg),
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| reject(None, None, format!("malformed JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(reject(None, None, "a frame must be a JSON object".into()));
    };
    let obj = Obj(&map);
    let rid = match map.get("rid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_ID_BYTES => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(reject(
                None,
                None,
                format!("rid is longer than {MAX_ID_BYTES} bytes"),
            ));
        }
        Some(_) => return Err(reject(None, None, "rid must be a string".into())),
    };
    let ty = match map.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(reject(rid, None, "type must be a string".into())),
        None => return Err(reject(rid, None, "missing field type".into())),
    };
    let plain = |r: Field<Command>| r.map_err(|e| (None, e));
    let command = match ty {
        "connect" => plain(obj.connect()),
        "send" => {
            // A refused send still echoes its client id, when that was valid.
            let id = match map.get("id") {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_BYTES => {
                    Some(s.clone())
                }
                _ => None,
            };
            obj.send(limits).map_err(|e| (id, e))
        }
        "sync" => plain(obj.sync()),
        "history" => plain(obj.history()),
        "unread" => Ok(Command::Unread),
        "read" => plain(obj.read()),
        "played" => plain(obj.played()),
        "ping" => Ok(Command::Ping),
        "group_create" => plain(obj.group_create(limits)),
        "group_add" => plain(
            obj.group_users(limits)
                .map(|(group, users)| Command::GroupAdd { group, users }),
        ),
        "group_remove" => plain(
            obj.group_users(limits)
                .map(|(group, users)| Command::GroupRemove { group, users }),
        ),
        "group_leave" => plain(
            obj.group("group")
                .map(|group| Command::GroupLeave { group }),
        ),
        "group_info" => plain(obj.group("group").map(|group| Command::GroupInfo { group })),
        "conversations" => plain(obj.conversations()),
        "typing" => plain(obj.typing()),
        "recall" => plain(obj.msg_id().map(|msg| Command::Recall { msg })),
        other => Err((None, format!("unknown type {:?}", truncate(other, 32)))),
    };
    command
        .map(|command| Request {
            rid: rid.clone(),
            command,
        })
        .map_err(|(id, msg)| reject(rid, id, msg))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Typed access to a frame's fields, with errors that name the field.
struct Obj<'a>(&'a Map<String, Value>);

type Field<T> = Result<T, String>;

impl Obj<'_> {
    fn opt_str(&self, name: &str) -> Field<Option<&str>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{name} must be a string")),
        }
    }
    fn req_str(&self, name: &str) -> Field<&str> {
        self.opt_str(name)?
            .ok_or_else(|| format!("missing field {name}"))
    }
    fn opt_u64(&self, name: &str) -> Field<Option<u64>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{name} must be a non-negative integer")),
            Some(_) => Err(format!("{name} must be a non-negative integer")),
        }
    }
    fn opt_u32(&self, name: &str) -> Field<Option<u32>> {
        self.opt_u64(name)?
            .map(|n| u32::try_from(n).map_err(|_| format!("{name} is too large")))
            .transpose()
    }
    fn user(&self, name: &str) -> Field<String> {
        let s = self.req_str(name)?;
        if !valid_user_id(s) {
            return Err(format!(
                "{name} must be a user id: 1 to 64 characters of A-Z a-z 0-9 _ . -"
            ));
        }
        Ok(s.to_owned())
    }
    fn group(&self, name: &str) -> Field<String> {
        let s = self.req_str(name)?;
        if !valid_group_id(s) {
            return Err(format!(
                "{name} must be a group id: g- and 26 characters of a ULID"
            ));
        }
        Ok(s.to_owned())
    }
    /// Exactly one of a user field (`to`, `with`) and `group`.
    fn user_or_group(&self, user: &str) -> Field<(Option<String>, Option<String>)> {
        let has = |n: &str| !matches!(self.0.get(n), None | Some(Value::Null));
        match (has(user), has("group")) {
            (true, false) => Ok((Some(self.user(user)?), None)),
            (false, true) => Ok((None, Some(self.group("group")?))),
            _ => Err(format!("exactly one of {user} and group is required")),
        }
    }
    /// A list of user ids, at most `max`, without repeats (kept in order).
    fn users(&self, name: &str, max: usize) -> Field<Vec<String>> {
        let list = match self.0.get(name) {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => return Err(format!("missing field {name}")),
            Some(_) => return Err(format!("{name} must be an array of user ids")),
        };
        if list.len() > max {
            return Err(format!(
                "{name} lists more than {max} users (the group member limit)"
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for v in list {
            match v {
                Value::String(s) if valid_user_id(s) => {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
                _ => {
                    return Err(format!(
                        "{name} must hold user ids: 1 to 64 characters of A-Z a-z 0-9 _ . -"
                    ));
                }
            }
        }
        Ok(out)
    }
    fn limit(&self, (default, max): (u64, u64)) -> Field<u64> {
        match self.opt_u64("limit")? {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(format!("limit must be between 1 and {max}")),
        }
    }

    fn connect(&self) -> Field<Command> {
        let token = self.req_str("token")?.to_owned();
        let device = self.opt_str("device")?.unwrap_or_default();
        if device.len() > MAX_ID_BYTES {
            return Err(format!("device is longer than {MAX_ID_BYTES} bytes"));
        }
        Ok(Command::Connect {
            token,
            device: device.to_owned(),
        })
    }

    fn send(&self, limits: &Limits) -> Field<Command> {
        let id = self.req_str("id")?;
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(format!("id must be 1 to {MAX_ID_BYTES} bytes"));
        }
        let (to, group) = self.user_or_group("to")?;
        let kind_s = self.req_str("kind")?;
        let kind = match kind_s.parse::<Kind>() {
            Ok(Kind::System) | Err(_) => {
                return Err("kind must be one of text, emoji, image, video, voice".into());
            }
            Ok(k) => k,
        };
        let body = self.opt_str("body")?.unwrap_or_default();
        if body.len() > limits.max_body_bytes {
            return Err(format!(
                "body is longer than {} bytes",
                limits.max_body_bytes
            ));
        }
        // Not every archive can hold it (PostgreSQL's text cannot), and no
        // client means it.
        if body.contains('\0') {
            return Err("body must not contain U+0000".into());
        }
        let media = if kind.has_media() {
            Some(self.media(kind)?)
        } else {
            if body.is_empty() {
                return Err(format!(
                    "a {} message needs a non-empty body",
                    kind.as_str()
                ));
            }
            None
        };
        Ok(Command::Send(SendRequest {
            id: id.to_owned(),
            to: to.unwrap_or_default(),
            group,
            kind,
            body: body.to_owned(),
            media,
        }))
    }

    /// `media` of an image, video or voice message: `url` is required; the
    /// other fields are kept only where the kind allows them.
    fn media(&self, kind: Kind) -> Field<Media> {
        let need = || format!("a {} message needs media.url", kind.as_str());
        let map = match self.0.get("media") {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => return Err(need()),
            Some(_) => return Err("media must be an object".into()),
        };
        let m = Obj(map);
        let url = |name: &str| -> Field<Option<String>> {
            match m.opt_str(name)? {
                Some(u) if u.len() > MAX_URL_BYTES => {
                    Err(format!("media.{name} is longer than {MAX_URL_BYTES} bytes"))
                }
                Some("") => Err(format!("media.{name} must not be empty")),
                Some(u) if u.contains('\0') => Err(format!("media.{name} must not contain U+0000")),
                u => Ok(u.map(str::to_owned)),
            }
        };
        let mut media = Media {
            url: url("url")
                .map_err(|e| format!("media: {e}"))?
                .ok_or_else(need)?,
            ..Media::default()
        };
        let dims = |media: &mut Media| -> Field<()> {
            media.width = m.opt_u32("width").map_err(|e| format!("media.{e}"))?;
            media.height = m.opt_u32("height").map_err(|e| format!("media.{e}"))?;
            Ok(())
        };
        let duration = |media: &mut Media| -> Field<()> {
            media.duration_s = m.opt_u32("duration_s").map_err(|e| format!("media.{e}"))?;
            Ok(())
        };
        match kind {
            Kind::Image => dims(&mut media)?,
            Kind::Video => {
                media.cover_url = url("cover_url")?;
                dims(&mut media)?;
                duration(&mut media)?;
            }
            Kind::Voice => duration(&mut media)?,
            Kind::Text | Kind::Emoji | Kind::System => {}
        }
        Ok(media)
    }

    fn sync(&self) -> Field<Command> {
        Ok(Command::Sync {
            after: self.opt_u64("after")?.unwrap_or(0),
            limit: self.limit(SYNC_LIMIT)?,
        })
    }

    fn history(&self) -> Field<Command> {
        let before = self.opt_u64("before")?;
        if before == Some(0) {
            return Err("before must be at least 1".into());
        }
        let (with, group) = self.user_or_group("with")?;
        Ok(Command::History {
            with,
            group,
            before,
            limit: self.limit(HISTORY_LIMIT)?,
        })
    }

    fn read(&self) -> Field<Command> {
        let (with, group) = self.user_or_group("with")?;
        let seq = self
            .opt_u64("seq")?
            .ok_or_else(|| "missing field seq".to_owned())?;
        if seq == 0 {
            return Err("seq must be at least 1".into());
        }
        Ok(Command::Read { with, group, seq })
    }

    fn msg_id(&self) -> Field<String> {
        let msg = self.req_str("msg")?;
        if msg.is_empty() || msg.len() > MAX_ID_BYTES {
            return Err(format!(
                "msg must be a message id of 1 to {MAX_ID_BYTES} bytes"
            ));
        }
        Ok(msg.to_owned())
    }

    fn played(&self) -> Field<Command> {
        Ok(Command::Played {
            msg: self.msg_id()?,
        })
    }

    fn group_create(&self, limits: &Limits) -> Field<Command> {
        let name = self.req_str("name")?;
        if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES {
            return Err(format!("name must be 1 to {MAX_GROUP_NAME_BYTES} bytes"));
        }
        Ok(Command::GroupCreate {
            name: name.to_owned(),
            members: self.users("members", limits.max_group_members)?,
        })
    }

    fn group_users(&self, limits: &Limits) -> Field<(String, Vec<String>)> {
        let group = self.group("group")?;
        let users = self.users("users", limits.max_group_members)?;
        if users.is_empty() {
            return Err("users must name at least one user".into());
        }
        Ok((group, users))
    }

    fn conversations(&self) -> Field<Command> {
        let before = self.opt_u64("before")?;
        Ok(Command::Conversations {
            before,
            limit: self.limit(CONVERSATIONS_LIMIT)?,
        })
    }

    fn typing(&self) -> Field<Command> {
        let (to, group) = self.user_or_group("to")?;
        Ok(Command::Typing { to, group })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    const LIMITS: Limits = Limits {
        max_body_bytes: 16,
        max_group_members: 3,
    };

    fn ok(text: &str) -> Request {
        parse(text, &LIMITS).unwrap_or_else(|e| panic!("{text} refused: {e:?}"))
    }
    fn bad(text: &str) -> Rejected {
        let r = parse(text, &LIMITS).expect_err(text);
        assert_eq!(r.error.code, ErrorCode::BadRequest, "{text}");
        r
    }

    #[test]
    fn malformed_and_untyped_frames_are_bad_requests() {
        bad("{");
        bad("[1,2]");
        bad("\"send\"");
        bad(r#"{"rid":"r"}"#);
        assert_eq!(bad(r#"{"type":5,"rid":"r"}"#).rid.as_deref(), Some("r"));
        let r = bad(r#"{"type":"dance","rid":"r-9"}"#);
        assert_eq!(r.rid.as_deref(), Some("r-9"));
        assert!(r.error.message.contains("unknown type"));
    }

    #[test]
    fn rid_must_be_a_short_string() {
        assert_eq!(
            ok(r#"{"type":"ping","rid":"abc"}"#).rid.as_deref(),
            Some("abc")
        );
        bad(r#"{"type":"ping","rid":7}"#);
        bad(&format!(r#"{{"type":"ping","rid":"{}"}}"#, "r".repeat(65)));
    }

    #[test]
    fn send_is_validated_and_from_is_ignored() {
        let r = ok(
            r#"{"type":"send","id":"c-1","to":"bob","kind":"text","body":"hi","from":"mallory","x":1}"#,
        );
        let Command::Send(s) = r.command else {
            panic!()
        };
        assert_eq!(
            (s.id.as_str(), s.to.as_str(), s.body.as_str()),
            ("c-1", "bob", "hi")
        );
        assert_eq!(s.media, None);

        let e = bad(r#"{"type":"send","id":"c-2","to":"bob","kind":"gif","body":"x"}"#);
        assert_eq!(e.id.as_deref(), Some("c-2"));
        assert!(e.error.message.contains("kind must be one of"));
        bad(r#"{"type":"send","to":"bob","kind":"text","body":"x"}"#);
        bad(r#"{"type":"send","id":"","to":"bob","kind":"text","body":"x"}"#);
        bad(r#"{"type":"send","id":"c","to":"b b","kind":"text","body":"x"}"#);
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"text","body":""}"#);
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"emoji"}"#);
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"text","body":5}"#);
        // body limit is in bytes
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"text","body":"ééééééééé"}"#);
        ok(r#"{"type":"send","id":"c","to":"bob","kind":"text","body":"éééééééé"}"#);
        // NUL, which PostgreSQL's text cannot hold, is refused; other
        // control characters are fine.
        let e = bad(r#"{"type":"send","id":"c","to":"bob","kind":"text","body":"a\u0000b"}"#);
        assert!(e.error.message.contains("U+0000"), "{}", e.error.message);
        ok(r#"{"type":"send","id":"c","to":"bob","kind":"text","body":"a\u0001\tb"}"#);
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"image","media":{"url":"u\u0000"}}"#);
        bad(
            r#"{"type":"send","id":"c","to":"bob","kind":"video","media":{"url":"u","cover_url":"\u0000"}}"#,
        );
    }

    #[test]
    fn media_kinds_need_a_url_and_keep_only_their_fields() {
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"image","body":""}"#);
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"image","media":{"url":""}}"#);
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"image","media":"x"}"#);
        bad(
            r#"{"type":"send","id":"c","to":"bob","kind":"voice","media":{"url":"u","duration_s":-1}}"#,
        );
        let r = ok(
            r#"{"type":"send","id":"c","to":"bob","kind":"voice","media":{"url":"u","duration_s":7,"width":5}}"#,
        );
        let Command::Send(s) = r.command else {
            panic!()
        };
        assert_eq!(
            s.media,
            Some(Media {
                url: "u".into(),
                duration_s: Some(7),
                ..Media::default()
            })
        );
        let r = ok(
            r#"{"type":"send","id":"c","to":"bob","kind":"video","media":{"url":"u","cover_url":"c","width":1,"height":2,"duration_s":3}}"#,
        );
        let Command::Send(s) = r.command else {
            panic!()
        };
        let m = s.media.unwrap();
        assert_eq!(
            (m.cover_url.as_deref(), m.width, m.height, m.duration_s),
            (Some("c"), Some(1), Some(2), Some(3))
        );
        // text ignores media
        let r = ok(
            r#"{"type":"send","id":"c","to":"bob","kind":"text","body":"b","media":{"url":"u"}}"#,
        );
        let Command::Send(s) = r.command else {
            panic!()
        };
        assert_eq!(s.media, None);
    }

    #[test]
    fn paging_limits_have_defaults_and_bounds() {
        assert_eq!(
            ok(r#"{"type":"sync"}"#).command,
            Command::Sync {
                after: 0,
                limit: 100
            }
        );
        assert_eq!(
            ok(r#"{"type":"sync","after":38,"limit":1000}"#).command,
            Command::Sync {
                after: 38,
                limit: 1000
            }
        );
        bad(r#"{"type":"sync","limit":1001}"#);
        bad(r#"{"type":"sync","limit":0}"#);
        bad(r#"{"type":"sync","after":-1}"#);
        bad(r#"{"type":"sync","after":"3"}"#);
        assert_eq!(
            ok(r#"{"type":"history","with":"bob"}"#).command,
            Command::History {
                with: Some("bob".into()),
                group: None,
                before: None,
                limit: 50
            }
        );
        bad(r#"{"type":"history","with":"bob","limit":201}"#);
        bad(r#"{"type":"history"}"#);
    }

    #[test]
    fn read_played_connect_are_checked() {
        assert_eq!(
            ok(r#"{"type":"read","with":"bob","seq":17}"#).command,
            Command::Read {
                with: Some("bob".into()),
                group: None,
                seq: 17
            }
        );
        bad(r#"{"type":"read","with":"bob"}"#);
        bad(r#"{"type":"read","with":"bob","seq":0}"#);
        bad(r#"{"type":"played"}"#);
        bad(r#"{"type":"played","msg":12}"#);
        assert_eq!(
            ok(r#"{"type":"connect","token":"t"}"#).command,
            Command::Connect {
                token: "t".into(),
                device: String::new()
            }
        );
        bad(r#"{"type":"connect"}"#);
        bad(&format!(
            r#"{{"type":"connect","token":"t","device":"{}"}}"#,
            "d".repeat(65)
        ));
    }

    const G: &str = "g-01JD0000000000000000000000";

    #[test]
    fn send_takes_exactly_one_of_to_and_group() {
        let r = ok(&format!(
            r#"{{"type":"send","id":"c","group":"{G}","kind":"text","body":"b"}}"#
        ));
        let Command::Send(s) = r.command else {
            panic!()
        };
        assert_eq!((s.to.as_str(), s.group.as_deref()), ("", Some(G)));
        let e = bad(&format!(
            r#"{{"type":"send","id":"c","to":"bob","group":"{G}","kind":"text","body":"b"}}"#
        ));
        assert!(e.error.message.contains("exactly one"), "{e:?}");
        bad(r#"{"type":"send","id":"c","kind":"text","body":"b"}"#);
        bad(r#"{"type":"send","id":"c","group":"g-short","kind":"text","body":"b"}"#);
        // Lower case and I L O U are not Crockford base32.
        bad(
            r#"{"type":"send","id":"c","group":"g-01jd0000000000000000000000","kind":"text","body":"b"}"#,
        );
        bad(
            r#"{"type":"send","id":"c","group":"g-01JD000000000000000000000U","kind":"text","body":"b"}"#,
        );
        // system is the node's own kind.
        bad(r#"{"type":"send","id":"c","to":"bob","kind":"system","body":"b"}"#);
    }

    #[test]
    fn group_frames_are_checked() {
        assert_eq!(
            ok(r#"{"type":"group_create","name":"Team","members":["bob","carol","bob"]}"#).command,
            Command::GroupCreate {
                name: "Team".into(),
                members: vec!["bob".into(), "carol".into()]
            }
        );
        // At most max_group_members (3 here) users in one list.
        bad(r#"{"type":"group_create","name":"T","members":["a","b","c","d"]}"#);
        bad(r#"{"type":"group_create","name":"","members":[]}"#);
        bad(r#"{"type":"group_create","name":"T","members":[1]}"#);
        bad(r#"{"type":"group_create","name":"T"}"#);
        assert_eq!(
            ok(&format!(
                r#"{{"type":"group_add","group":"{G}","users":["dave"]}}"#
            ))
            .command,
            Command::GroupAdd {
                group: G.into(),
                users: vec!["dave".into()]
            }
        );
        bad(&format!(
            r#"{{"type":"group_remove","group":"{G}","users":[]}}"#
        ));
        bad(r#"{"type":"group_leave"}"#);
        assert_eq!(
            ok(&format!(r#"{{"type":"group_info","group":"{G}"}}"#)).command,
            Command::GroupInfo { group: G.into() }
        );
        assert_eq!(
            ok(&format!(r#"{{"type":"history","group":"{G}"}}"#)).command,
            Command::History {
                with: None,
                group: Some(G.into()),
                before: None,
                limit: 50
            }
        );
        bad(&format!(
            r#"{{"type":"read","with":"bob","group":"{G}","seq":1}}"#
        ));
    }

    #[test]
    fn conversations_typing_recall_are_checked() {
        assert_eq!(
            ok(r#"{"type":"conversations"}"#).command,
            Command::Conversations {
                before: None,
                limit: 50
            }
        );
        bad(r#"{"type":"conversations","limit":201}"#);
        bad(r#"{"type":"conversations","before":"x"}"#);
        assert_eq!(
            ok(r#"{"type":"typing","to":"bob"}"#).command,
            Command::Typing {
                to: Some("bob".into()),
                group: None
            }
        );
        bad(r#"{"type":"typing"}"#);
        assert_eq!(
            ok(r#"{"type":"recall","msg":"01JD"}"#).command,
            Command::Recall { msg: "01JD".into() }
        );
        bad(r#"{"type":"recall","msg":""}"#);
    }
}
