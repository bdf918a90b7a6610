//! The settings handlers run with: typed (`Duration`s, `usize`s,
//! [`Retention`]) and checked once, from the command line, by
//! `Config::settings`. Nothing below the server reads the raw `Config`.

use std::time::Duration;

use crate::protocol::client::Limits;
use crate::store::Retention;
use crate::store::redis::archiver::ArchiverSettings;

/// Everything a connection enforces.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// What a request may carry (parsing).
    pub limits: Limits,
    /// Largest WebSocket frame accepted.
    pub max_frame_bytes: usize,
    /// Largest reply frame: pages are cut to fit.
    pub max_reply_bytes: usize,
    /// WebSocket read buffer allocated per connection.
    pub read_buffer: usize,
    /// Deliveries queued for one session before it counts as too slow, in
    /// frames and in bytes.
    pub outbound_queue: usize,
    pub outbound_queue_bytes: usize,
    /// Sessions one user may hold on this node.
    pub max_sessions_per_user: usize,
    /// Sustained frames per second, and the burst above it.
    pub rate_per_s: u32,
    pub rate_burst: u32,
    /// No `connect` within this: close 4008.
    pub auth_timeout: Duration,
    /// No frame at all within this: close 4008.
    pub idle_timeout: Duration,
    /// Ping interval suggested to clients in `connected`.
    pub heartbeat_s: u64,
    /// How long draining sessions get before close 4009.
    pub drain_grace: Duration,
    /// Most sessions told `reconnect` per second while draining.
    pub drain_rate: u32,
    /// How often a live session re-reads its token.
    pub token_check: Duration,
}

/// The settings of one node.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connection: ConnectionSettings,
    /// Inbox retention, in both stores.
    pub retention: Retention,
    /// Lifetime of tokens issued by `/v1/tokens`.
    pub token_ttl: Duration,
    /// Connections the node's port holds at once, in all and per client
    /// address (0: no limit).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Deadline for an HTTP client's request headers.
    pub http_header_timeout: Duration,
    /// Deadline of one Redis command.
    pub redis_timeout: Duration,
    /// How long a client message id is remembered.
    pub client_id_ttl: Duration,
    /// The SQL archive, when there is one.
    pub archive: Option<ArchiveSettings>,
    /// Most members of a group, owner included.
    pub max_group_members: usize,
    /// How long after sending a message its sender may recall it (zero:
    /// never).
    pub recall_window: Duration,
    /// JWT connect tokens: keys and required claims.
    pub jwt: crate::jwt::JwtSettings,
    /// How long a jti revoked before any session used it stays refused.
    pub jwt_revoked_ttl: Duration,
    /// The offline push webhook, when configured.
    pub push: Option<crate::push::PushSettings>,
}

/// The archive and the hot window.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub url: String,
    /// This node's archiver, unless it runs none (`CHAT_ARCHIVER=off`).
    pub archiver: Option<ArchiverSettings>,
    /// The hot window the in-memory store keeps (Redis: the archivers trim).
    pub hot_messages: u64,
    pub hot: Duration,
    /// Most feed entries before sends are refused.
    pub max_lag: u64,
}
