//! The message object as stored and as sent to clients.

use serde::{Deserialize, Serialize};

/// What a message carries. The wire spelling (serde) and the stored one
/// (strum: `"voice".parse()`, `<&str>::from(kind)`) are the same.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    Text,
    Emoji,
    Image,
    Video,
    Voice,
    /// A membership change of a group, stored by the node (PROTOCOL.md 1.1);
    /// never sent by a client.
    System,
}

impl Kind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
    /// `image`, `video` and `voice` carry `media`; `text` and `emoji` a body.
    pub fn has_media(self) -> bool {
        matches!(self, Kind::Image | Kind::Video | Kind::Voice)
    }
}

/// Media of an image, video or voice message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Media {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u32>,
}

/// What a `system` message says happened to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemEvent {
    /// `created`, `added`, `removed`, `left` or `owner`.
    pub event: String,
    /// Who made the change.
    pub by: String,
    /// Whom it concerns.
    pub users: Vec<String>,
}

/// A stored message (PROTOCOL.md, "Message object").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Server id (a ULID): unique in the cluster, increasing with time.
    pub id: String,
    pub conv: String,
    /// Position in the conversation, from 1, gap-free.
    pub seq: u64,
    pub from: String,
    /// The receiver of a one-to-one message; empty (and not sent) in groups.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// The group of a group message (since 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: Kind,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// Server time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// Only on voice messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub played: Option<bool>,
    /// Only on `system` messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemEvent>,
    /// `true` once its sender recalled it (body and media are gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled: Option<bool>,
}

impl Message {
    /// Takes the content away for good: what a recalled message reads as.
    pub fn recall(&mut self) {
        self.body.clear();
        self.media = None;
        self.recalled = Some(true);
    }

    /// The users a one-to-one message belongs to (one for a message to
    /// oneself); empty for a group message.
    pub fn dm_users(&self) -> Vec<&str> {
        if self.group.is_some() {
            return Vec::new();
        }
        let mut v = vec![self.from.as_str()];
        if self.to != self.from {
            v.push(self.to.as_str());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_serializes_as_the_protocol_shows() {
        let m = Message {
            id: "01JD".into(),
            conv: "dm:alice:bob".into(),
            seq: 17,
            from: "alice".into(),
            to: "bob".into(),
            kind: Kind::Voice,
            body: String::new(),
            media: Some(Media {
                url: "u".into(),
                duration_s: Some(7),
                ..Media::default()
            }),
            ts: 1763856000123,
            played: Some(false),
            group: None,
            system: None,
            recalled: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"01JD","conv":"dm:alice:bob","seq":17,"from":"alice","to":"bob",
                "kind":"voice","body":"","media":{"url":"u","duration_s":7},"ts":1763856000123u64,"played":false})
        );
        let text = Message {
            kind: Kind::Text,
            media: None,
            played: None,
            ..m
        };
        let v = serde_json::to_value(&text).unwrap();
        assert!(v.get("played").is_none() && v.get("media").is_none());
    }
}
