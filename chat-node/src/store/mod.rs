//! The store seam: everything a node keeps outside its own memory of
//! connections. Tokens, messages, per-conversation `seq`, per-user inboxes
//! and `pts`, unread counts, read and played state, client-id idempotency,
//! and the node registry.
//!
//! Two implementations: [`memory::MemoryStore`] (the embedded default, one
//! node) and [`redis::RedisStore`] (production). Both keep the same rules; the
//! integration tests run the same protocol suite against each.

pub mod memory;
pub mod redis;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::protocol::server::{ConversationItem, GroupName, GroupView, InboxEntry, InboxEvent};
use crate::protocol::{Kind, Media, Message, SystemEvent};

/// How long a client message id is remembered for idempotent retries.
pub const CLIENT_ID_TTL_MS: u64 = 24 * 3600 * 1000;

/// A backend failure. Nothing was changed when one of these is returned
/// (writes are atomic), so the client may retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this code does not understand.
    #[error("store answered unexpectedly: {0}")]
    Corrupt(String),
}

impl From<parley_cluster::RegistryError> for StoreError {
    fn from(e: parley_cluster::RegistryError) -> Self {
        match e {
            parley_cluster::RegistryError::Unavailable(m) => StoreError::Unavailable(m),
            parley_cluster::RegistryError::Corrupt(m) => StoreError::Corrupt(m),
        }
    }
}

/// A message about to be stored; the store assigns its `seq`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub conv: String,
    pub from: String,
    /// Empty for a group message.
    pub to: String,
    pub group: Option<String>,
    pub kind: Kind,
    pub body: String,
    pub media: Option<Media>,
    pub ts: u64,
    pub system: Option<SystemEvent>,
}

impl NewMessage {
    /// The stored message, once `seq` is known.
    pub fn into_message(self, seq: u64) -> Message {
        let played = (self.kind == Kind::Voice).then_some(false);
        Message {
            id: self.id,
            conv: self.conv,
            seq,
            from: self.from,
            to: self.to,
            group: self.group,
            kind: self.kind,
            body: self.body,
            media: self.media,
            ts: self.ts,
            played,
            system: self.system,
            recalled: None,
        }
    }
}

/// The result of storing a message.
#[derive(Debug, Clone)]
pub struct Stored {
    pub msg: Message,
    /// The message's position in the sender's inbox (0 when unknown: a
    /// duplicate recorded before positions were kept).
    pub sender_pts: u64,
    /// Its position in the receiver's inbox; `None` for a message to oneself
    /// (one inbox entry) and when unknown.
    pub receiver_pts: Option<u64>,
    /// The client id was seen before: `msg` is the first stored message,
    /// with its first positions, and nothing new was stored. It is
    /// delivered again all the same: the first attempt may have timed out
    /// before anyone got it, and devices drop a `pts` they already have.
    pub duplicate: bool,
    /// When asked for: where the sessions of the sender and the receiver
    /// are, read in the same atomic step as the write, so a session opening
    /// meanwhile is either listed here or starts from an inbox position
    /// that already includes the message.
    pub routes: Option<Routes>,
    /// Pushes to offline receivers the full push feed refused (counted as
    /// `dropped`); the message is stored all the same.
    pub push_dropped: u64,
}

/// The nodes holding sessions of a user: (port, instance) pairs.
pub type Nodes = Vec<(u16, String)>;

/// For some users, the nodes holding their sessions.
pub type Routes = Vec<(String, Nodes)>;

/// A page of a user's inbox.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub entries: Vec<InboxEntry>,
    pub more: bool,
    /// The user's newest inbox position.
    pub pts: u64,
    /// Set when entries after `after` were dropped by retention: the oldest
    /// `pts` still kept (PROTOCOL.md, "Messages older than the node's hot
    /// window"); the client fills the gap per conversation with `history`.
    pub trimmed_to: Option<u64>,
}

/// A page of a conversation, ascending `seq`.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub more: bool,
}

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub user: String,
    pub platform: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: u64,
}

/// The answer to `played`.
#[derive(Debug, Clone)]
pub enum PlayedOutcome {
    Played(Box<Message>),
    NotFound,
    /// The user is not the message's receiver.
    Forbidden,
    NotVoice,
}

/// The answer to `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    Marked,
    /// `seq` is beyond the conversation's newest message.
    BeyondEnd {
        last: u64,
    },
}

/// Inbox retention: an entry is dropped once it is both older than
/// `max_age_ms` and not among the user's newest `max_entries`.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_entries: u64,
    pub max_age_ms: u64,
}

/// A membership change (PROTOCOL.md 1.1, "Groups").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOp {
    /// A new group; `members` are the others (the actor is the owner).
    Create {
        name: String,
        members: Vec<String>,
    },
    Add(Vec<String>),
    Remove(Vec<String>),
    Leave,
}

/// A membership change to store, with the ids its system messages get.
#[derive(Debug, Clone)]
pub struct GroupChange {
    pub group: String,
    /// Who asks.
    pub actor: String,
    pub op: GroupOp,
    /// Ids for the system messages (a leaving owner makes two: `left`, then
    /// `owner`).
    pub msg_ids: [String; 2],
    pub ts: u64,
    /// The most members a group may have.
    pub max_members: usize,
}

/// A group message stored: the message, and each recipient's inbox
/// position (the sender's included).
#[derive(Debug, Clone)]
pub struct GroupStored {
    pub msg: Message,
    pub inboxes: Vec<(String, u64)>,
    /// The client id was seen before: `msg` is the first message, nothing
    /// new was stored, and `inboxes` is empty (members that missed it find
    /// it by `sync`).
    pub duplicate: bool,
    /// When asked for: where the recipients' sessions are, read in the
    /// same atomic step (see [`Stored::routes`]).
    pub routes: Option<Routes>,
    /// See [`Stored::push_dropped`].
    pub push_dropped: u64,
}

/// The answer to a group request that can be refused.
#[derive(Debug, Clone)]
pub enum GroupOutcome<T> {
    Done(T),
    /// No such group.
    NotFound,
    /// The user may not do this in the group (not a member, not the owner).
    Forbidden(&'static str),
    /// The change would make the group larger than allowed.
    TooMany,
    /// Not a valid change (say, the owner removing themself).
    Invalid(&'static str),
}

/// A stored membership change: the group after it (`None` once the last
/// member left), and its system messages.
#[derive(Debug, Clone)]
pub struct GroupChanged {
    pub group: Option<GroupView>,
    pub messages: Vec<GroupStored>,
    /// When asked for: where the recipients of every message are.
    pub routes: Option<Routes>,
}

/// A page of a user's conversation list, most recently active first.
#[derive(Debug, Clone, Default)]
pub struct ConversationPage {
    pub items: Vec<ConversationItem>,
    pub more: bool,
}

/// The answer to `recall`.
#[derive(Debug, Clone)]
pub enum RecallOutcome {
    /// Recalled: the message as it reads now, and the `event` entry each
    /// participant's inbox got.
    Recalled {
        msg: Box<Message>,
        event: InboxEvent,
        inboxes: Vec<(String, u64)>,
    },
    NotFound,
    /// Not the user's own message.
    Forbidden,
    /// Past the recall window (or recall is disabled).
    TooLate,
    AlreadyRecalled,
}

/// Why `user` may not recall `msg` at `now_ms`, if they may not (the
/// rules recall.lua checks in Redis).
pub fn recall_refusal(
    msg: &Message,
    user: &str,
    now_ms: u64,
    window_ms: u64,
) -> Option<RecallOutcome> {
    if msg.from != user || msg.kind == Kind::System {
        return Some(RecallOutcome::Forbidden);
    }
    if msg.recalled == Some(true) {
        return Some(RecallOutcome::AlreadyRecalled);
    }
    if window_ms == 0 || now_ms > msg.ts.saturating_add(window_ms) {
        return Some(RecallOutcome::TooLate);
    }
    None
}

/// A stand-in for a conversation item's last message until the archive
/// fills it in.
pub(crate) fn placeholder_message() -> Message {
    NewMessage {
        id: String::new(),
        conv: String::new(),
        from: String::new(),
        to: String::new(),
        group: None,
        kind: Kind::Text,
        body: String::new(),
        media: None,
        ts: 0,
        system: None,
    }
    .into_message(0)
}

/// The `event` entry a recall appends.
pub fn recalled_event(msg: &Message, by: &str) -> InboxEvent {
    InboxEvent {
        kind: "recalled".into(),
        msg: msg.id.clone(),
        conv: msg.conv.clone(),
        by: by.to_owned(),
    }
}

pub use parley_cluster::NodeRecord;

/// One entry of the offline push feed: a push owed to `user` for a message
/// stored while they had no live session (DESIGN.md, "Offline push").
#[derive(Debug, Clone)]
pub struct PushEntry {
    /// The entry's handle in the feed (a stream id in Redis).
    pub key: String,
    pub user: String,
    pub msg_id: String,
    /// The message; `None` once it is gone (recalled, or left Redis).
    pub msg: Option<Message>,
    /// When the entry was written (ms since the Unix epoch).
    pub queued_ms: u64,
}

/// The offline push feed, as one pusher reads it: the send's atomic step
/// writes the entries; a pusher takes some, delivers each, and only then
/// marks it done, so an entry in hand when its node dies is taken again by
/// another pusher (Redis: after the claim timeout).
#[async_trait]
pub trait PushFeed: Send + Sync + 'static {
    /// Up to `max` entries for this pusher: with `claim`, entries another
    /// pusher has held past the claim timeout; else new ones (waiting up
    /// to about half a second for some).
    async fn take(&self, max: usize, claim: bool) -> Result<Vec<PushEntry>, StoreError>;
    /// Keeps an entry in hand this pusher's (resets its claim timeout).
    async fn hold(&self, key: &str) -> Result<(), StoreError>;
    /// The entry is delivered or given up: it leaves the feed.
    async fn done(&self, key: &str) -> Result<(), StoreError>;
    /// Entries in the feed, waiting or in hand (cluster-wide in Redis).
    async fn backlog(&self) -> Result<u64, StoreError>;
}

/// The store seam.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the backend does.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records a token under the hash of its secret.
    async fn put_token(&self, token_hash: &str, record: &TokenRecord) -> Result<(), StoreError>;
    /// The token's record, if it exists and has not expired at `now_ms`.
    async fn get_token(
        &self,
        token_hash: &str,
        now_ms: u64,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Deletes a token; returns what it was, if it existed.
    async fn delete_token(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Records the token of a JWT session under `token_hash` until its
    /// expiry, so the session checks and revocation of opaque tokens apply
    /// to it; with `jti`, only when that jti (whose hash `token_hash` is)
    /// is not revoked, in the same atomic step. `false`, and nothing
    /// recorded, when it is.
    async fn put_jwt_token(
        &self,
        token_hash: &str,
        record: &TokenRecord,
        jti: bool,
    ) -> Result<bool, StoreError>;
    /// Revokes a JWT `jti` whose sessions record their token under
    /// `token_hash`: refused from now until that token's expiry (or
    /// `until_ms` when no session recorded it), its record deleted, in one
    /// atomic step. Returns the record, if there was one (its sessions are
    /// to be kicked).
    async fn revoke_jti(
        &self,
        token_hash: &str,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Stores a message atomically: assigns `seq`, appends to the
    /// conversation and to both inboxes, bumps the receiver's unread count and
    /// records the client id; or, for a known client id, changes nothing and
    /// returns the first message. With `routes`, also reads the presence of
    /// both users (see [`Stored::routes`]), saving a round trip per send.
    async fn send(
        &self,
        msg: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<Stored, StoreError>;
    /// A session of `user` opened on node `port` (run `instance`) with the
    /// token whose hash is `token_hash`: records presence and returns the
    /// user's newest inbox position, in one atomic step that also checks
    /// the token still exists. `None` (and nothing recorded) when it was
    /// revoked or expired since it was checked: a revocation is either seen
    /// here or finds the session registered and kicks it.
    async fn join(
        &self,
        user: &str,
        port: u16,
        instance: &str,
        token_hash: &str,
    ) -> Result<Option<u64>, StoreError>;
    /// The user's last session on node `port` closed: removes the presence
    /// entry if it still belongs to `instance`.
    async fn leave(&self, user: &str, port: u16, instance: &str) -> Result<(), StoreError>;
    /// For each user, the nodes holding sessions of theirs: (port, instance).
    async fn presence(&self, users: &[&str]) -> Result<Vec<Nodes>, StoreError>;
    /// Removes presence entries of node `port`: with `keep`, every entry of
    /// another instance; else only the entries of `instance`. Returns how many.
    async fn clear_presence(
        &self,
        port: u16,
        instance: &str,
        keep: bool,
    ) -> Result<u64, StoreError>;
    /// Inbox entries with `pts > after`, ascending, at most `limit`.
    async fn sync(&self, user: &str, after: u64, limit: u64) -> Result<SyncPage, StoreError>;
    /// The newest `limit` messages of `conv` with `seq < before`, ascending.
    async fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: u64,
    ) -> Result<HistoryPage, StoreError>;
    /// Unread counts by peer (zeros left out).
    async fn unread(&self, user: &str) -> Result<BTreeMap<String, u64>, StoreError>;
    /// Marks `conv` read by `user` up to `seq`; clears the unread count for `peer`.
    async fn mark_read(
        &self,
        user: &str,
        peer: &str,
        conv: &str,
        seq: u64,
    ) -> Result<ReadOutcome, StoreError>;
    /// Marks a voice message played by its receiver `user` (in a group:
    /// any member but the sender).
    async fn mark_played(&self, user: &str, msg_id: &str) -> Result<PlayedOutcome, StoreError>;

    /// Creates a group or changes its members, storing the system
    /// messages in the group's conversation, in one atomic step.
    /// With `routes`, also reads the recipients' presence in that step.
    async fn group_change(
        &self,
        change: GroupChange,
        routes: bool,
    ) -> Result<GroupOutcome<GroupChanged>, StoreError>;
    /// Stores a message to a group atomically (membership checked, `seq`,
    /// every member's inbox, unread, conversation lists, client id,
    /// archive feed), or recognises a retried client id. With `routes`,
    /// also reads the members' presence in that step.
    async fn group_send(
        &self,
        msg: NewMessage,
        client_id: &str,
        routes: bool,
    ) -> Result<GroupOutcome<GroupStored>, StoreError>;
    /// A group, with its members in join order.
    async fn group(&self, id: &str) -> Result<Option<GroupView>, StoreError>;
    /// The user's conversations last active before `before` (ms), most
    /// recent first, at most `limit`.
    async fn conversations(
        &self,
        user: &str,
        before: u64,
        limit: u64,
    ) -> Result<ConversationPage, StoreError>;
    /// Recalls the user's own message if it is at most `window_ms` old at
    /// `now_ms`: its content is gone from every tier, and every
    /// participant's inbox gets an `event` entry, in one step.
    async fn recall(
        &self,
        user: &str,
        msg_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<RecallOutcome, StoreError>;

    /// Creates or refreshes this node's registry entry.
    async fn register_node(&self, node: &NodeRecord) -> Result<(), StoreError>;
    /// Removes a node's registry entry if it still belongs to `instance`.
    async fn deregister_node(&self, port: u16, instance: &str) -> Result<bool, StoreError>;
    /// Every registered node, by port.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: &str, kind: Kind, ts: u64) -> Message {
        let mut m = placeholder_message();
        m.from = from.to_owned();
        m.kind = kind;
        m.ts = ts;
        m
    }

    #[test]
    fn recall_is_for_the_sender_within_the_window_once() {
        let m = msg("alice", Kind::Text, 1000);
        assert!(recall_refusal(&m, "alice", 1000 + 120_000, 120_000).is_none());
        assert!(matches!(
            recall_refusal(&m, "bob", 1001, 120_000),
            Some(RecallOutcome::Forbidden)
        ));
        assert!(matches!(
            recall_refusal(&m, "alice", 1000 + 120_001, 120_000),
            Some(RecallOutcome::TooLate)
        ));
        assert!(matches!(
            recall_refusal(&m, "alice", 1000, 0),
            Some(RecallOutcome::TooLate)
        ));
        let mut gone = m.clone();
        gone.recall();
        assert_eq!((gone.body.as_str(), gone.media.is_none()), ("", true));
        assert!(matches!(
            recall_refusal(&gone, "alice", 1001, 120_000),
            Some(RecallOutcome::AlreadyRecalled)
        ));
        assert!(matches!(
            recall_refusal(&msg("alice", Kind::System, 1000), "alice", 1001, 120_000),
            Some(RecallOutcome::Forbidden)
        ));
    }
}
