//! Names of the `CHAT_*` environment variables a chat-node reads (each is
//! also a flag; see the chat-node's `config`). The operator's StatefulSet
//! builder sets them by these names, so a rename cannot drift.

pub const CLUSTER: &str = "CHAT_CLUSTER";
pub const REDIS_URL: &str = "CHAT_REDIS_URL";
pub const AMQP_URL: &str = "CHAT_AMQP_URL";
pub const ADMIN_TOKEN: &str = "CHAT_ADMIN_TOKEN";
pub const ORDINAL: &str = "CHAT_ORDINAL";
pub const BASE_PORT: &str = "CHAT_BASE_PORT";
pub const PORT_STEP: &str = "CHAT_PORT_STEP";
pub const PORT: &str = "CHAT_PORT";
pub const HEALTH_PORT: &str = "CHAT_HEALTH_PORT";
pub const BIND: &str = "CHAT_BIND";
pub const ADVERTISE: &str = "CHAT_ADVERTISE";
pub const NODE_NAME: &str = "CHAT_NODE_NAME";
pub const INSTANCE_ID: &str = "CHAT_INSTANCE_ID";
pub const MAX_FRAME_BYTES: &str = "CHAT_MAX_FRAME_BYTES";
pub const MAX_BODY_BYTES: &str = "CHAT_MAX_BODY_BYTES";
pub const IDLE_TIMEOUT_S: &str = "CHAT_IDLE_TIMEOUT_S";
pub const AUTH_TIMEOUT_S: &str = "CHAT_AUTH_TIMEOUT_S";
pub const HEARTBEAT_S: &str = "CHAT_HEARTBEAT_S";
pub const RATE_PER_S: &str = "CHAT_RATE_PER_S";
pub const RATE_BURST: &str = "CHAT_RATE_BURST";
pub const INBOX_RETENTION_DAYS: &str = "CHAT_INBOX_RETENTION_DAYS";
pub const INBOX_RETENTION_ENTRIES: &str = "CHAT_INBOX_RETENTION_ENTRIES";
pub const DRAIN_GRACE_S: &str = "CHAT_DRAIN_GRACE_S";
pub const TOKEN_TTL_S: &str = "CHAT_TOKEN_TTL_S";
pub const WS_READ_BUFFER: &str = "CHAT_WS_READ_BUFFER";
pub const OUTBOUND_QUEUE: &str = "CHAT_OUTBOUND_QUEUE";
pub const HTTP_HEADER_TIMEOUT_S: &str = "CHAT_HTTP_HEADER_TIMEOUT_S";
pub const REDIS_TIMEOUT_MS: &str = "CHAT_REDIS_TIMEOUT_MS";
pub const MAX_REPLY_BYTES: &str = "CHAT_MAX_REPLY_BYTES";
pub const SESSION_CHECK_S: &str = "CHAT_SESSION_CHECK_S";
pub const DRAIN_RATE: &str = "CHAT_DRAIN_RATE";
pub const MAX_SESSIONS_PER_USER: &str = "CHAT_MAX_SESSIONS_PER_USER";
pub const OUTBOUND_QUEUE_BYTES: &str = "CHAT_OUTBOUND_QUEUE_BYTES";
pub const MAX_CONNECTIONS: &str = "CHAT_MAX_CONNECTIONS";
pub const MAX_CONNECTIONS_PER_IP: &str = "CHAT_MAX_CONNECTIONS_PER_IP";
pub const CLIENT_ID_TTL_S: &str = "CHAT_CLIENT_ID_TTL_S";
pub const ARCHIVE_URL: &str = "CHAT_ARCHIVE_URL";
pub const ARCHIVER: &str = "CHAT_ARCHIVER";
pub const HOT_MESSAGES: &str = "CHAT_HOT_MESSAGES";
pub const HOT_SECONDS: &str = "CHAT_HOT_SECONDS";
pub const ARCHIVE_MAX_LAG: &str = "CHAT_ARCHIVE_MAX_LAG";
pub const ARCHIVE_BATCH: &str = "CHAT_ARCHIVE_BATCH";
pub const ARCHIVE_CLAIM_S: &str = "CHAT_ARCHIVE_CLAIM_S";
pub const MAX_GROUP_MEMBERS: &str = "CHAT_MAX_GROUP_MEMBERS";
pub const RECALL_WINDOW_S: &str = "CHAT_RECALL_WINDOW_S";

/// Sessions per second a draining node tells to reconnect, unless set.
pub const DEFAULT_DRAIN_RATE: u32 = 500;

// JWT connect tokens (PROTOCOL.md 1.1, "JWT connect tokens").
pub const JWT_SECRET: &str = "CHAT_JWT_SECRET";
pub const JWT_PUBLIC_KEY: &str = "CHAT_JWT_PUBLIC_KEY";
pub const JWT_JWKS: &str = "CHAT_JWT_JWKS";
pub const JWT_ISSUER: &str = "CHAT_JWT_ISSUER";
pub const JWT_AUDIENCE: &str = "CHAT_JWT_AUDIENCE";
pub const JWT_REVOKED_TTL_S: &str = "CHAT_JWT_REVOKED_TTL_S";

// The offline push webhook (DESIGN.md, "Offline push").
pub const PUSH_WEBHOOK_URL: &str = "CHAT_PUSH_WEBHOOK_URL";
pub const PUSH_WEBHOOK_SECRET: &str = "CHAT_PUSH_WEBHOOK_SECRET";
pub const PUSH_RETRY_S: &str = "CHAT_PUSH_RETRY_S";
pub const PUSH_TIMEOUT_MS: &str = "CHAT_PUSH_TIMEOUT_MS";
pub const PUSH_QUEUE: &str = "CHAT_PUSH_QUEUE";
pub const PUSH_QUEUE_BYTES: &str = "CHAT_PUSH_QUEUE_BYTES";
pub const PUSH_CONCURRENCY: &str = "CHAT_PUSH_CONCURRENCY";
pub const PUSH_CLAIM_S: &str = "CHAT_PUSH_CLAIM_S";
pub const PUSH_WEBHOOK_CA: &str = "CHAT_PUSH_WEBHOOK_CA";
