//! Node configuration: one typed struct, read from flags and the environment
//! variables named in DESIGN.md, with every default in one place.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use parley_cluster::{PortFormula, env, ids};

use crate::error::Error;
use crate::protocol::client::Limits;
use crate::settings::{ArchiveSettings, ConnectionSettings, Settings};
use crate::store::Retention;
use crate::store::redis::archiver::ArchiverSettings;

/// Everything a chat-node can be told at start. Each field is a flag and an
/// environment variable (`CHAT_*`); flags win.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-node",
    version,
    about = "parley chat node: WebSocket chat over one port"
)]
pub struct Config {
    /// Cluster id: prefixes every Redis key (`chat:C:`) and RabbitMQ name (`chat.C`).
    #[arg(long, env = env::CLUSTER, default_value = "local")]
    pub cluster: String,

    /// Redis URL (e.g. redis://127.0.0.1:6379/0). Unset: the in-memory store (one node, nothing persisted).
    #[arg(long, env = env::REDIS_URL)]
    pub redis_url: Option<String>,

    /// RabbitMQ URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f). Unset: the in-process bus (one node).
    #[arg(long, env = env::AMQP_URL)]
    pub amqp_url: Option<String>,

    /// Bearer secret for `/v1/tokens`. Unset: a random one, printed at start.
    #[arg(long, env = env::ADMIN_TOKEN, hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Node ordinal. Unset: taken from a hostname ending in `-N` (StatefulSet pod), else 0.
    #[arg(long, env = env::ORDINAL)]
    pub ordinal: Option<u32>,

    /// Port of ordinal 0; a node listens on base + ordinal x step.
    #[arg(long, env = env::BASE_PORT, default_value_t = 8750)]
    pub base_port: u16,

    /// Distance between the ports of consecutive ordinals.
    #[arg(long, env = env::PORT_STEP, default_value_t = 10)]
    pub port_step: u16,

    /// Explicit port; overrides base + ordinal x step. 0 picks a free port.
    #[arg(long, env = env::PORT)]
    pub port: Option<u16>,

    /// A fixed second port serving /healthz, /readyz and /metrics, so one pod
    /// template can probe every ordinal. 0 disables it.
    #[arg(long, env = env::HEALTH_PORT, default_value_t = 9090)]
    pub health_port: u16,

    /// Listen address.
    #[arg(long, env = env::BIND, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Address clients should use for this node (`/v1/route`). May contain
    /// `{pod}`, `{ordinal}` and `{port}`. Unset: `<hostname>:<port>`.
    #[arg(long, env = env::ADVERTISE)]
    pub advertise: Option<String>,

    /// Node name shown to clients (`connected.node`, `/v1/route`). Unset: the
    /// hostname when it ends in `-<ordinal>` (a StatefulSet pod), else `chat-<ordinal>`.
    #[arg(long, env = env::NODE_NAME)]
    pub node_name: Option<String>,

    /// Id of this run of the node (the pod UID via the downward API). Unset: random.
    #[arg(long, env = env::INSTANCE_ID)]
    pub instance_id: Option<String>,

    /// Largest WebSocket frame accepted, in bytes; larger ones get `too_large` and close 1009.
    #[arg(long, env = env::MAX_FRAME_BYTES, default_value_t = 65536, value_parser = clap::value_parser!(u32).range(256..=16 << 20))]
    pub max_frame_bytes: u32,

    /// Largest reply frame, in bytes: `sync` and `history` pages are cut to
    /// fit (with `more: true`), and the write buffer of each connection is
    /// sized from it.
    #[arg(long, env = env::MAX_REPLY_BYTES, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(64 << 10..=16 << 20))]
    pub max_reply_bytes: u32,

    /// Largest message `body`, in bytes.
    #[arg(long, env = env::MAX_BODY_BYTES, default_value_t = Limits::DEFAULT.max_body_bytes as u32, value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    pub max_body_bytes: u32,

    /// Close a connection (4008) that sent no frame of any kind for this many seconds.
    #[arg(long, env = env::IDLE_TIMEOUT_S, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_s: u64,

    /// Close a connection (4008) that sent no `connect` within this many seconds.
    #[arg(long, env = env::AUTH_TIMEOUT_S, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_timeout_s: u64,

    /// Client ping interval suggested in `connected.heartbeat_s`.
    #[arg(long, env = env::HEARTBEAT_S, default_value_t = 30)]
    pub heartbeat_s: u64,

    /// Sustained frames per second allowed per connection.
    #[arg(long, env = env::RATE_PER_S, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_per_s: u32,

    /// Frames a connection may send in a burst above the sustained rate.
    /// A connection refused this many frames in a row is closed (4003).
    #[arg(long, env = env::RATE_BURST, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,

    /// Inbox entries younger than this many days are kept.
    #[arg(long, env = env::INBOX_RETENTION_DAYS, default_value_t = 30)]
    pub inbox_retention_days: u64,

    /// The newest this-many inbox entries of each user are kept, however old.
    #[arg(long, env = env::INBOX_RETENTION_ENTRIES, default_value_t = 10000, value_parser = clap::value_parser!(u64).range(1..))]
    pub inbox_retention_entries: u64,

    /// On SIGTERM, at most this many sessions per second are told
    /// `reconnect`, spread over the drain grace (which must cover the
    /// sessions a node holds: grace x rate).
    #[arg(long, env = env::DRAIN_RATE, default_value_t = env::DEFAULT_DRAIN_RATE, value_parser = clap::value_parser!(u32).range(1..))]
    pub drain_rate: u32,

    /// On SIGTERM, seconds sessions get to leave after `reconnect` before the node closes them (4009).
    #[arg(long, env = env::DRAIN_GRACE_S, default_value_t = 15)]
    pub drain_grace_s: u64,

    /// Lifetime of tokens issued by `/v1/tokens`, in seconds (at most ten years).
    #[arg(long, env = env::TOKEN_TTL_S, default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..=10 * 365 * 24 * 3600))]
    pub token_ttl_s: u64,

    /// Every live session re-reads its token about this often (with jitter),
    /// so a revocation whose kick was lost still ends it; a session also
    /// ends when its token expires.
    #[arg(long, env = env::SESSION_CHECK_S, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=24 * 3600))]
    pub session_check_s: u64,

    /// WebSocket read buffer per connection, in bytes: allocated for every
    /// connection, so it sets much of the memory an idle session costs; it
    /// grows on demand for larger frames.
    #[arg(long, env = env::WS_READ_BUFFER, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(256..))]
    pub ws_read_buffer: u32,

    /// Deliveries queued for one session before it counts as too slow and is closed (1013).
    #[arg(long, env = env::OUTBOUND_QUEUE, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub outbound_queue: u32,

    /// Bytes queued for one session before it counts as too slow and is closed (1013).
    #[arg(long, env = env::OUTBOUND_QUEUE_BYTES, default_value_t = 4 << 20, value_parser = clap::value_parser!(u32).range(64 << 10..))]
    pub outbound_queue_bytes: u32,

    /// Sessions one user may hold on one node; one more is refused
    /// (`forbidden`, close 4003).
    #[arg(long, env = env::MAX_SESSIONS_PER_USER, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions_per_user: u32,

    /// Connections (HTTP and WebSocket) the node's port holds at once; more
    /// are answered 503 and closed.
    #[arg(long, env = env::MAX_CONNECTIONS, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Connections one client address may hold at once; 0 for no limit (the
    /// default: behind a load balancer that does not keep client addresses,
    /// every client has the balancer's).
    #[arg(long, env = env::MAX_CONNECTIONS_PER_IP, default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// Close an HTTP connection that has not sent its request headers within this many seconds.
    #[arg(long, env = env::HTTP_HEADER_TIMEOUT_S, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_s: u64,

    /// Give up on a Redis command after this many milliseconds (the client gets `unavailable`).
    #[arg(long, env = env::REDIS_TIMEOUT_MS, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_timeout_ms: u64,

    /// How long a client message id is remembered, in seconds: a repeated
    /// `send` id within it is answered with the first message. The protocol
    /// promises 24 hours; set it lower only for tests and benchmarks.
    #[arg(long, env = env::CLIENT_ID_TTL_S, default_value_t = 24 * 3600, value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub client_id_ttl_s: u64,

    /// The SQL archive every message goes to: `mysql://user:pass@host/db`
    /// (MySQL or MariaDB), `postgres://user:pass@host/db`, or
    /// `sqlite://file.db` (created when missing; one node only). With it,
    /// Redis (or the in-memory store) keeps only the hot window of each
    /// conversation. Unset: no archive, everything stays in the store.
    #[arg(long, env = env::ARCHIVE_URL, hide_env_values = true)]
    pub archive_url: Option<String>,

    /// Run an archiver on this node (`on` or `off`): it drains the archive
    /// feed into SQL, one consumer of the cluster's group.
    #[arg(long, env = env::ARCHIVER, default_value = "on", value_parser = ["on", "off"])]
    pub archiver: String,

    /// The hot window, in messages: each conversation's newest this-many
    /// stay in Redis.
    #[arg(long, env = env::HOT_MESSAGES, default_value_t = 200)]
    pub hot_messages: u64,

    /// The hot window, in seconds: no message younger than this leaves Redis.
    #[arg(long, env = env::HOT_SECONDS, default_value_t = 86400)]
    pub hot_seconds: u64,

    /// Most messages the archive may be behind (entries in the feed) before
    /// sends are refused with `unavailable`, so an archive that is down
    /// cannot fill Redis.
    #[arg(long, env = env::ARCHIVE_MAX_LAG, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub archive_max_lag: u64,

    /// Most messages an archiver writes in one SQL statement.
    #[arg(long, env = env::ARCHIVE_BATCH, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub archive_batch: u32,

    /// Archive entries pending this many seconds under another archiver (one
    /// that died) are taken over.
    #[arg(long, env = env::ARCHIVE_CLAIM_S, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub archive_claim_s: u64,

    /// Most members of a group, owner included (each group message is
    /// written to every member's inbox).
    #[arg(long, env = env::MAX_GROUP_MEMBERS, default_value_t = Limits::DEFAULT.max_group_members as u32, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub max_group_members: u32,

    /// How long, in seconds, the sender of a message may recall it; 0
    /// disables recall.
    #[arg(long, env = env::RECALL_WINDOW_S, default_value_t = 120)]
    pub recall_window_s: u64,

    /// HS256 secret (at least 32 bytes) of JWT connect tokens minted by the
    /// application's backend.
    #[arg(long, env = env::JWT_SECRET, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file of the RSA (RS256) or P-256 (ES256) public key of JWT
    /// connect tokens.
    #[arg(long, env = env::JWT_PUBLIC_KEY)]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS file of JWT connect tokens (RSA and P-256 keys, chosen by the
    /// token's `kid`); re-read when it changes.
    #[arg(long, env = env::JWT_JWKS)]
    pub jwt_jwks: Option<PathBuf>,

    /// When set, a JWT must carry this `iss`.
    #[arg(long, env = env::JWT_ISSUER)]
    pub jwt_issuer: Option<String>,

    /// When set, a JWT must carry this `aud`.
    #[arg(long, env = env::JWT_AUDIENCE)]
    pub jwt_audience: Option<String>,

    /// How long a `jti` revoked before any session used it is refused, in
    /// seconds (a used one is refused until its token's `exp`): longer than
    /// the JWTs the application mints live.
    #[arg(long, env = env::JWT_REVOKED_TTL_S, default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..=10 * 365 * 24 * 3600))]
    pub jwt_revoked_ttl_s: u64,

    /// `http://` or `https://` URL that receives a POST for each message
    /// stored for a user with no live session (the offline push webhook).
    /// Unset: no push.
    #[arg(long, env = env::PUSH_WEBHOOK_URL)]
    pub push_webhook_url: Option<String>,

    /// Key of the webhook's `X-Parley-Signature` (HMAC-SHA256 of the body).
    #[arg(long, env = env::PUSH_WEBHOOK_SECRET, hide_env_values = true)]
    pub push_webhook_secret: Option<String>,

    /// How long a push is retried (with backoff) before it counts as failed, in seconds.
    #[arg(long, env = env::PUSH_RETRY_S, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=24 * 3600))]
    pub push_retry_s: u64,

    /// Deadline of one webhook attempt, in milliseconds.
    #[arg(long, env = env::PUSH_TIMEOUT_MS, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub push_timeout_ms: u64,

    /// Most pushes waiting or in flight (with Redis: in the cluster's push
    /// feed); more are dropped (counted).
    #[arg(long, env = env::PUSH_QUEUE, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub push_queue: u32,

    /// Most bytes of pushes waiting or in flight in the in-memory store's
    /// feed; more are dropped (counted). (Redis feed entries hold two ids.)
    #[arg(long, env = env::PUSH_QUEUE_BYTES, default_value_t = 16 << 20, value_parser = clap::value_parser!(u32).range(64 << 10..))]
    pub push_queue_bytes: u32,

    /// Most webhook requests in flight at once.
    #[arg(long, env = env::PUSH_CONCURRENCY, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub push_concurrency: u32,

    /// A push another node has held this long without a sign of life (it
    /// died mid-delivery) is taken over, in seconds. More than twice the
    /// attempt deadline.
    #[arg(long, env = env::PUSH_CLAIM_S, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub push_claim_s: u64,

    /// PEM file of the certificate authorities an `https` webhook is
    /// checked against. Unset: the Mozilla root certificates.
    #[arg(long, env = env::PUSH_WEBHOOK_CA)]
    pub push_webhook_ca: Option<String>,
}

impl Config {
    /// Checks what clap cannot: names that end up in Redis keys and queue
    /// names, and backends that only work together.
    pub fn validate(&self) -> Result<(), Error> {
        ids::check_cluster_id(&self.cluster)
            .map_err(|e| Error::Config(format!("{}: {e}", env::CLUSTER)))?;
        if let Some(url) = &self.archive_url {
            crate::archive::Engine::of(url)
                .map_err(|e| Error::Config(format!("{}: {e}", env::ARCHIVE_URL)))?;
        }
        // A `group` reply lists every member (quoted, comma) and is not
        // paged: it must fit in a reply.
        let group_reply = self.max_group_members as u64
            * (crate::protocol::client::MAX_ID_BYTES as u64 + 3)
            + 1024;
        if group_reply > u64::from(self.max_reply_bytes) {
            return Err(Error::Config(format!(
                "{} ({}) makes a group reply of up to {group_reply} bytes, more than {} ({})",
                env::MAX_GROUP_MEMBERS,
                self.max_group_members,
                env::MAX_REPLY_BYTES,
                self.max_reply_bytes
            )));
        }
        if (self.jwt_issuer.is_some() || self.jwt_audience.is_some()) && !self.jwt().enabled() {
            return Err(Error::Config(format!(
                "{} and {} need a JWT key: {}, {} or {}",
                env::JWT_ISSUER,
                env::JWT_AUDIENCE,
                env::JWT_SECRET,
                env::JWT_PUBLIC_KEY,
                env::JWT_JWKS
            )));
        }
        match (&self.push_webhook_url, &self.push_webhook_secret) {
            (Some(url), Some(secret)) => {
                crate::push::check_url(url)
                    .map_err(|e| Error::Config(format!("{}: {e}", env::PUSH_WEBHOOK_URL)))?;
                if secret.is_empty() {
                    return Err(Error::Config(format!(
                        "{} is empty",
                        env::PUSH_WEBHOOK_SECRET
                    )));
                }
                if self.push_claim_s * 1000 <= 2 * self.push_timeout_ms {
                    return Err(Error::Config(format!(
                        "{} ({} s) must be more than twice {} ({} ms): a push would be taken over while its attempt runs",
                        env::PUSH_CLAIM_S,
                        self.push_claim_s,
                        env::PUSH_TIMEOUT_MS,
                        self.push_timeout_ms
                    )));
                }
            }
            (None, None) => {}
            _ => {
                return Err(Error::Config(format!(
                    "{} and {} go together: pushes are always signed",
                    env::PUSH_WEBHOOK_URL,
                    env::PUSH_WEBHOOK_SECRET
                )));
            }
        }
        if self.amqp_url.is_some() && self.redis_url.is_none() {
            return Err(Error::Config(format!(
                "{} needs {}: the nodes of a cluster share inboxes and presence in Redis",
                env::AMQP_URL,
                env::REDIS_URL
            )));
        }
        Ok(())
    }

    /// The JWT keys and claims asked for.
    pub fn jwt(&self) -> crate::jwt::JwtSettings {
        crate::jwt::JwtSettings {
            secret: self.jwt_secret.clone(),
            public_key: self.jwt_public_key.clone(),
            jwks: self.jwt_jwks.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        }
    }

    /// The node ordinal: the flag, else the `-N` suffix of `hostname`, else 0.
    pub fn resolve_ordinal(&self, hostname: &str) -> u32 {
        self.ordinal
            .or_else(|| ids::ordinal_from_hostname(hostname))
            .unwrap_or(0)
    }

    /// The port to listen on: the explicit port, else base + ordinal x step.
    pub fn resolve_port(&self, ordinal: u32) -> Result<u16, Error> {
        if let Some(p) = self.port {
            return Ok(p);
        }
        self.port_formula().port(ordinal).ok_or_else(|| {
            Error::Config(format!(
                "base port {} + ordinal {ordinal} x step {} is past 65535",
                self.base_port, self.port_step
            ))
        })
    }

    /// The cluster's port formula (base and step).
    pub fn port_formula(&self) -> PortFormula {
        PortFormula {
            base: self.base_port,
            step: self.port_step,
        }
    }

    /// The typed settings the node runs with, checked once here.
    pub fn settings(&self) -> Result<Settings, Error> {
        self.validate()?;
        let day_ms = 24 * 3600 * 1000;
        let retention_ms = self
            .inbox_retention_days
            .checked_mul(day_ms)
            .ok_or_else(|| Error::Config(format!("{} is too large", env::INBOX_RETENTION_DAYS)))?;
        Ok(Settings {
            connection: ConnectionSettings {
                limits: Limits {
                    max_body_bytes: self.max_body_bytes as usize,
                    max_group_members: self.max_group_members as usize,
                },
                max_frame_bytes: self.max_frame_bytes as usize,
                max_reply_bytes: self.max_reply_bytes as usize,
                read_buffer: self.ws_read_buffer as usize,
                outbound_queue: self.outbound_queue as usize,
                outbound_queue_bytes: self.outbound_queue_bytes as usize,
                max_sessions_per_user: self.max_sessions_per_user as usize,
                rate_per_s: self.rate_per_s,
                rate_burst: self.rate_burst,
                auth_timeout: Duration::from_secs(self.auth_timeout_s),
                idle_timeout: Duration::from_secs(self.idle_timeout_s),
                heartbeat_s: self.heartbeat_s,
                drain_grace: Duration::from_secs(self.drain_grace_s),
                drain_rate: self.drain_rate,
                token_check: Duration::from_secs(self.session_check_s),
            },
            retention: Retention {
                max_entries: self.inbox_retention_entries,
                max_age_ms: retention_ms,
            },
            token_ttl: Duration::from_secs(self.token_ttl_s),
            max_connections: self.max_connections as usize,
            max_connections_per_ip: self.max_connections_per_ip as usize,
            http_header_timeout: Duration::from_secs(self.http_header_timeout_s),
            redis_timeout: Duration::from_millis(self.redis_timeout_ms),
            client_id_ttl: Duration::from_secs(self.client_id_ttl_s),
            archive: self.archive_url.as_ref().map(|url| ArchiveSettings {
                url: url.clone(),
                archiver: (self.archiver == "on").then(|| ArchiverSettings {
                    batch: self.archive_batch as usize,
                    claim_after: Duration::from_secs(self.archive_claim_s),
                    hot_messages: self.hot_messages,
                    hot: Duration::from_secs(self.hot_seconds),
                }),
                hot_messages: self.hot_messages,
                hot: Duration::from_secs(self.hot_seconds),
                max_lag: self.archive_max_lag,
            }),
            max_group_members: self.max_group_members as usize,
            recall_window: Duration::from_secs(self.recall_window_s),
            jwt: self.jwt(),
            jwt_revoked_ttl: Duration::from_secs(self.jwt_revoked_ttl_s),
            push: match (&self.push_webhook_url, &self.push_webhook_secret) {
                (Some(url), Some(secret)) => Some(crate::push::PushSettings {
                    url: url.clone(),
                    secret: secret.clone(),
                    retry_for: Duration::from_secs(self.push_retry_s),
                    timeout: Duration::from_millis(self.push_timeout_ms),
                    max_queue: self.push_queue as usize,
                    max_queue_bytes: self.push_queue_bytes as usize,
                    concurrency: self.push_concurrency as usize,
                    claim_after: Duration::from_secs(self.push_claim_s),
                    ca_file: self.push_webhook_ca.clone(),
                }),
                _ => None,
            },
        })
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        Config::parse_from(["chat-node"])
    }
}

/// Fills `{pod}`, `{ordinal}` and `{port}` in an advertise template.
pub fn fill_advertise(template: &str, pod: &str, ordinal: u32, port: u16) -> String {
    template
        .replace("{pod}", pod)
        .replace("{ordinal}", &ordinal.to_string())
        .replace("{port}", &port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_base_plus_ordinal_times_step() {
        let c = Config::defaults();
        assert_eq!(c.resolve_port(0).unwrap(), 8750);
        assert_eq!(c.resolve_port(2).unwrap(), 8770);
        assert!(c.resolve_port(10_000).is_err());
        let c = Config::parse_from(["chat-node", "--port", "9999"]);
        assert_eq!(c.resolve_port(2).unwrap(), 9999);
    }

    #[test]
    fn flag_ordinal_wins_over_hostname() {
        let c = Config::parse_from(["chat-node", "--ordinal", "4"]);
        assert_eq!(c.resolve_ordinal("chat-1"), 4);
        assert_eq!(Config::defaults().resolve_ordinal("chat-1"), 1);
        assert_eq!(Config::defaults().resolve_ordinal("laptop"), 0);
    }

    #[test]
    fn advertise_template_is_filled() {
        assert_eq!(
            fill_advertise("{pod}.chat.ns.svc:{port}", "chat-2", 2, 8770),
            "chat-2.chat.ns.svc:8770"
        );
        assert_eq!(
            fill_advertise("lb-{ordinal}.example.com:443", "p", 7, 1),
            "lb-7.example.com:443"
        );
    }

    #[test]
    fn a_bus_without_a_shared_store_is_refused() {
        let c = Config::parse_from(["chat-node", "--amqp-url", "amqp://x"]);
        assert!(c.validate().is_err());
        assert!(c.settings().is_err());
    }

    #[test]
    fn archive_url_scheme_is_checked() {
        let c = Config::parse_from(["chat-node", "--archive-url", "sqlite://chat.db"]);
        let a = c.settings().unwrap().archive.unwrap();
        assert!(a.archiver.is_some());
        let c = Config::parse_from(["chat-node", "--archive-url", "oracle://x"]);
        assert!(c.settings().is_err());
        let c = Config::parse_from([
            "chat-node",
            "--archive-url",
            "sqlite://a",
            "--archiver",
            "off",
        ]);
        assert!(c.settings().unwrap().archive.unwrap().archiver.is_none());
        assert!(Config::try_parse_from(["chat-node", "--archiver", "maybe"]).is_err());
    }

    #[test]
    fn push_webhook_needs_a_secret_an_http_or_https_url_and_a_claim_timeout_past_attempts() {
        let c = Config::parse_from(["chat-node", "--push-webhook-url", "http://h/p"]);
        assert!(c.validate().is_err());
        let c = Config::parse_from(["chat-node", "--push-webhook-secret", "s"]);
        assert!(c.validate().is_err());
        let hook = |url: &str, more: &[&str]| {
            let args = [
                "chat-node",
                "--push-webhook-url",
                url,
                "--push-webhook-secret",
                "s",
            ];
            Config::parse_from(args.iter().chain(more))
        };
        assert!(hook("ftp://h/p", &[]).validate().is_err());
        assert!(hook("https://h/p", &[]).validate().is_ok());
        // An attempt may last 40 s: a 60 s claim timeout could take it over.
        let slow = ["--push-timeout-ms", "40000"];
        assert!(hook("https://h/p", &slow).validate().is_err());
        let slow = ["--push-timeout-ms", "40000", "--push-claim-s", "81"];
        assert!(hook("https://h/p", &slow).validate().is_ok());
        let c = Config::parse_from([
            "chat-node",
            "--push-webhook-url",
            "http://h:81/p",
            "--push-webhook-secret",
            "s",
        ]);
        let p = c.settings().unwrap().push.unwrap();
        assert_eq!((p.retry_for.as_secs(), p.max_queue), (300, 10_000));
        assert!(Config::defaults().settings().unwrap().push.is_none());
    }

    #[test]
    fn jwt_claims_without_a_key_are_refused() {
        let c = Config::parse_from(["chat-node", "--jwt-issuer", "app"]);
        assert!(c.validate().is_err());
        let c = Config::parse_from([
            "chat-node",
            "--jwt-issuer",
            "app",
            "--jwt-secret",
            "0123456789abcdef0123456789abcdef",
        ]);
        assert!(c.settings().unwrap().jwt.enabled());
    }

    #[test]
    fn cluster_id_is_checked() {
        assert!(Config::defaults().validate().is_ok());
        let c = Config::parse_from(["chat-node", "--cluster", "a b"]);
        assert!(c.validate().is_err());
        let c = Config::parse_from(["chat-node", "--cluster", "a:b"]);
        assert!(c.validate().is_err());
    }

    #[test]
    fn group_and_recall_limits_have_defaults_and_bounds() {
        let s = Config::defaults().settings().unwrap();
        assert_eq!(s.max_group_members, 500);
        assert_eq!(s.connection.limits.max_group_members, 500);
        assert_eq!(s.recall_window, Duration::from_secs(120));
        let c = Config::parse_from(["chat-node", "--recall-window-s", "0"]);
        assert_eq!(c.settings().unwrap().recall_window, Duration::ZERO);
        assert!(Config::try_parse_from(["chat-node", "--max-group-members", "1"]).is_err());
        // Every member of a group must fit in the reply that lists them.
        let c = Config::parse_from([
            "chat-node",
            "--max-group-members",
            "10000",
            "--max-reply-bytes",
            "65536",
        ]);
        assert!(c.settings().is_err());
    }
}
