//! What every connection and HTTP handler of one node shares: its
//! identity, typed settings, the store, the delivery hub (sessions and
//! bus behind it), metrics, and the drain signal.

use std::sync::Arc;

use crate::cache::Cached;
use crate::drain::Drain;
use crate::hub::Hub;
use crate::ids::{self, MessageIds};
use crate::jwt::{self, JwtVerifier};
use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::settings::Settings;
use crate::shutdown::Listener;
use crate::store::{NodeRecord, Store, StoreError, TokenRecord};
use crate::unanswered::Unanswered;

/// How long the registry and readiness are kept between reads.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Who this node is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The cluster it belongs to (`CHAT_CLUSTER`).
    pub cluster: String,
    /// Name shown to clients (`chat-1`).
    pub name: String,
    /// The port it serves on (its registry key and queue name).
    pub port: u16,
    /// Address clients should use for it.
    pub address: String,
    /// Id of this run (pod UID or random).
    pub instance: String,
}

/// State shared by everything in one node.
pub struct Node {
    pub id: Identity,
    pub settings: Settings,
    pub admin_token: String,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    pub ids: MessageIds,
    /// The drain: its signal and the pacing of `reconnect` frames.
    pub drain: Drain,
    /// The registry and readiness, read at most once a second.
    registry: Cached<Vec<NodeRecord>>,
    backends_ready: Cached<bool>,
    presence_locks: Vec<tokio::sync::Mutex<()>>,
    /// Checks JWT connect tokens, when a JWT key is configured.
    pub jwt: Option<JwtVerifier>,
    /// One-to-one sends this node answered `unavailable` (their retries are
    /// delivered, no other retry is).
    pub unanswered: Unanswered,
}

impl Node {
    pub fn new(
        id: Identity,
        settings: Settings,
        admin_token: String,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        metrics: Metrics,
    ) -> Self {
        let drain = Drain::new(
            settings.connection.drain_rate,
            settings.connection.drain_grace,
        );
        metrics
            .drain_grace_seconds
            .set(settings.connection.drain_grace.as_secs() as i64);
        Node {
            id,
            settings,
            admin_token,
            store,
            hub,
            metrics,
            ids: MessageIds::default(),
            drain,
            registry: Cached::new(CACHE_TTL),
            backends_ready: Cached::new(CACHE_TTL),
            presence_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            jwt: None,
            unanswered: Unanswered::default(),
        }
    }

    /// Accepts JWT connect tokens checked by `jwt`.
    pub fn with_jwt(mut self, jwt: Option<JwtVerifier>) -> Self {
        self.jwt = jwt;
        self
    }

    /// Whether a send must read its users' presence: to route it to other
    /// nodes. (The push feed reads presence inside the send's own step.)
    pub fn wants_routes(&self) -> bool {
        self.hub.is_clustered()
    }

    /// The sessions this node holds.
    pub fn sessions(&self) -> &Sessions {
        self.hub.sessions()
    }

    /// Starts draining: sessions are told to reconnect elsewhere, paced,
    /// `/readyz` answers 503, no new connection is accepted.
    pub async fn start_drain(&self) {
        // Where to send sessions: the registry as it is now (without it,
        // clients ask /v1/route themselves).
        let nodes = tokio::time::timeout(std::time::Duration::from_secs(1), self.store.nodes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let online = self.sessions().online() as u64;
        if online > self.drain.capacity() {
            tracing::warn!(
                online,
                paced = self.drain.capacity(),
                "more sessions than the drain grace can pace at the drain rate; the rest are closed at its end"
            );
        }
        let now = ids::now_ms();
        self.metrics.drain_started.set((now / 1000) as i64);
        self.drain.start(&nodes, self.id.port, now);
    }

    pub fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// Waits for the drain.
    pub fn drain_signal(&self) -> Listener {
        self.drain.listen()
    }

    /// Ready to take sessions: not draining, and the backends answer
    /// (as of at most a second ago).
    pub async fn ready(&self) -> bool {
        if self.is_draining() {
            return false;
        }
        let checked = self
            .backends_ready
            .get(|| async {
                Ok::<_, StoreError>(
                    self.hub.bus().is_none_or(|b| b.ready()) && self.store.ping().await.is_ok(),
                )
            })
            .await;
        checked.unwrap_or(false)
    }

    /// The node registry, as of at most a second ago.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.registry.get(|| self.store.nodes()).await
    }

    /// The record of the token hashed `token_hash`, when it is valid now.
    pub async fn check_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.store.get_token(token_hash, ids::now_ms()).await
    }

    /// What the `token` of a `connect` stands for: the hash its sessions
    /// are known by (for revocation) and its record; `None` when refused.
    /// An opaque token is looked up; a JWT (when JWT keys are configured) is
    /// verified here, then recorded until its `exp` (under its `jti` when it
    /// has one, refused if that was revoked), so that session checks,
    /// expiry and revocation work as for opaque tokens.
    pub async fn check_connect_token(
        &self,
        token: &str,
    ) -> Result<Option<(String, TokenRecord)>, StoreError> {
        if let Some(verifier) = &self.jwt
            && jwt::looks_like_jwt(token)
        {
            let id = match verifier.verify(token) {
                Ok(id) => id,
                Err(why) => {
                    self.metrics.jwt_refused.inc();
                    tracing::debug!(reason = %why, "JWT refused");
                    return Ok(None);
                }
            };
            let hash = match &id.jti {
                Some(jti) => jwt_jti_hash(jti),
                None => ids::token_hash(token),
            };
            let record = TokenRecord {
                user: id.user,
                platform: id.platform,
                expires_at: id.expires_at_ms,
            };
            let recorded = self
                .store
                .put_jwt_token(&hash, &record, id.jti.is_some())
                .await?;
            if !recorded {
                self.metrics.jwt_refused.inc();
                tracing::debug!(user = %record.user, "JWT refused: its jti is revoked");
            }
            return Ok(recorded.then_some((hash, record)));
        }
        let hash = ids::token_hash(token);
        Ok(self.check_token_hash(&hash).await?.map(|r| (hash, r)))
    }

    /// This node's registry entry as of now.
    pub fn record(&self, ready: bool) -> NodeRecord {
        NodeRecord {
            port: self.id.port,
            name: self.id.name.clone(),
            address: self.id.address.clone(),
            ready,
            online: self.sessions().online() as u64,
            heartbeat_ms: ids::now_ms(),
            instance: self.id.instance.clone(),
        }
    }

    /// The lock that serializes presence writes for `user` on this node, so
    /// a session opening and the last one closing cannot reorder them.
    fn presence_lock(&self, user: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        &self.presence_locks[(h.finish() as usize) % self.presence_locks.len()]
    }

    /// A session of `user` (already registered here) opened with the token
    /// hashed `token_hash`: record presence; returns the user's newest
    /// inbox position, or `None` when the token is gone by now.
    pub async fn join(&self, user: &str, token_hash: &str) -> Result<Option<u64>, StoreError> {
        let _g = self.presence_lock(user).lock().await;
        self.store
            .join(user, self.id.port, &self.id.instance, token_hash)
            .await
    }

    /// A session of `user` closed (already deregistered): if it was the
    /// user's last one here, drop the presence entry.
    pub async fn leave(&self, user: &str) {
        let _g = self.presence_lock(user).lock().await;
        if self.sessions().has_user(user) {
            return;
        }
        if let Err(e) = self
            .store
            .leave(user, self.id.port, &self.id.instance)
            .await
        {
            tracing::warn!(error = %e, user, "cannot drop presence; it is cleared when this node restarts");
        }
    }
}

/// The hash a JWT's sessions are recorded under when it has a `jti`: that
/// of the path `DELETE /v1/tokens/jti:<jti>` names, so revoking it finds
/// them.
pub fn jwt_jti_hash(jti: &str) -> String {
    ids::token_hash(&format!("{JTI_PREFIX}{jti}"))
}

/// How `DELETE /v1/tokens/<token>` names a JWT by its `jti`.
pub const JTI_PREFIX: &str = "jti:";
