//! The node registry: `chat:C:ports` (port -> online count, the original
//! design's port hash) and `chat:C:node:P` (a node's details), and presence
//! clean-up. A node writes its entry, the operator reads and collects it;
//! both go through [`Registry`], and every removal is a compare-and-delete
//! on the node run's instance id (DESIGN.md, "Safety rules for collection").

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{AsyncCommands, IntoConnectionInfo, Script};

use crate::keys::Keys;

/// How often a node refreshes its registry entry.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often a node that is not ready yet re-checks and re-registers.
pub const NOT_READY_INTERVAL: Duration = Duration::from_millis(500);
/// A registry entry whose heartbeat is older than this is a node that died
/// without cleaning up (three missed heartbeats).
pub const STALE_AFTER_MS: u64 = 15_000;
/// Members of a node's user set one presence script call looks at (the
/// SSCAN `COUNT`). Redis runs a script to its end before anything else, so
/// a node's whole user set in one call would stall every client for
/// O(users); a page of this size keeps each call short. `COUNT` is a hint:
/// Redis may return a few more (the rest of a hash bucket), or a small set
/// in its compact encoding at once.
pub const PRESENCE_BATCH: u32 = 500;

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Redis could not be reached or did not answer in time.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something this code does not understand.
    #[error("Redis answered unexpectedly: {0}")]
    Corrupt(String),
}

impl From<redis::RedisError> for RegistryError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
        {
            RegistryError::Unavailable(e.to_string())
        } else {
            RegistryError::Corrupt(e.to_string())
        }
    }
}

/// One node in the registry (`chat:C:ports` and `chat:C:node:P`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    pub port: u16,
    /// Pod or node name, as clients see it.
    pub name: String,
    /// Address clients connect to.
    pub address: String,
    pub ready: bool,
    /// Authenticated sessions on the node.
    pub online: u64,
    /// Last heartbeat, milliseconds since the Unix epoch.
    pub heartbeat_ms: u64,
    /// Id of this run of the node (pod UID or random).
    pub instance: String,
}

impl NodeRecord {
    /// Whether the node is ready and was heard from within
    /// [`STALE_AFTER_MS`] of `now_ms`: the nodes `/v1/route` may name.
    pub fn live(&self, now_ms: u64) -> bool {
        self.ready && self.heartbeat_fresh(now_ms)
    }

    /// Whether the node was heard from within [`STALE_AFTER_MS`] of
    /// `now_ms`, ready or not: a run that may still be alive, which
    /// collection must not judge gone.
    pub fn heartbeat_fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.heartbeat_ms) < STALE_AFTER_MS
    }
}

/// One reconnecting connection to Redis, with `TCP_NODELAY` (off by
/// default in redis-rs: Nagle would hold back pipelined writes) and a
/// timeout on every command. Connects lazily, so a program starts while
/// Redis is down and works once it answers.
pub fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, RegistryError> {
    let bad = |e: redis::RedisError| RegistryError::Unavailable(format!("bad Redis URL: {e}"));
    let info = url
        .into_connection_info()
        .map_err(bad)?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let client = redis::Client::open(info).map_err(bad)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// The registry and presence of one cluster in one Redis database.
#[derive(Clone)]
pub struct Registry {
    conn: ConnectionManager,
    keys: Keys,
    scripts: &'static Scripts,
}

/// The scripts, hashed once per process (Redis caches them by SHA).
pub(crate) struct Scripts {
    pub(crate) deregister: Script,
    pub(crate) clear_presence: Script,
    pub(crate) collect_run: Script,
    pub(crate) node_runs: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        deregister: Script::new(include_str!("lua/deregister.lua")),
        clear_presence: Script::new(include_str!("lua/clear_presence.lua")),
        collect_run: Script::new(include_str!("lua/collect_run.lua")),
        node_runs: Script::new(include_str!("lua/node_runs.lua")),
    })
}

impl Registry {
    /// The registry of `cluster` over `conn` (shared with other users of
    /// the connection: it is a handle onto one multiplexed connection).
    pub fn new(conn: ConnectionManager, cluster: &str) -> Self {
        Registry {
            conn,
            keys: Keys::new(cluster),
            scripts: scripts(),
        }
    }

    /// The key names of this cluster.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn scripts(&self) -> &'static Scripts {
        self.scripts
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Creates or refreshes a node's registry entry, and records that its
    /// port has a queue (so collection finds the queue after the node is gone).
    pub async fn register_node(&self, node: &NodeRecord) -> Result<(), RegistryError> {
        let k = &self.keys;
        let _: () = redis::pipe()
            .atomic()
            .hset(k.ports(), node.port, node.online)
            .ignore()
            .sadd(k.queue_ports(), node.port)
            .ignore()
            .hset_multiple(
                k.node(node.port),
                &[
                    ("name", node.name.clone()),
                    ("address", node.address.clone()),
                    ("ready", if node.ready { "1" } else { "0" }.to_owned()),
                    ("online", node.online.to_string()),
                    ("heartbeat_ms", node.heartbeat_ms.to_string()),
                    ("instance", node.instance.clone()),
                ],
            )
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Removes a node's registry entry if it still belongs to `instance`.
    pub async fn deregister_node(&self, port: u16, instance: &str) -> Result<bool, RegistryError> {
        let removed: i64 = self
            .scripts()
            .deregister
            .key(self.keys.ports())
            .key(self.keys.node(port))
            .arg(port)
            .arg(instance)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(removed == 1)
    }

    /// Every registered node, by port.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, RegistryError> {
        let mut conn = self.conn();
        let ports: BTreeMap<u16, u64> = conn.hgetall(self.keys.ports()).await?;
        if ports.is_empty() {
            return Ok(vec![]);
        }
        let mut pipe = redis::pipe();
        for port in ports.keys() {
            pipe.hgetall(self.keys.node(*port));
        }
        let details: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(ports
            .into_iter()
            .zip(details)
            .map(|((port, online), d)| NodeRecord {
                port,
                name: d.get("name").cloned().unwrap_or_default(),
                address: d.get("address").cloned().unwrap_or_default(),
                ready: d.get("ready").is_some_and(|r| r == "1"),
                online,
                heartbeat_ms: d
                    .get("heartbeat_ms")
                    .and_then(|h| h.parse().ok())
                    .unwrap_or(0),
                instance: d.get("instance").cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// Removes presence entries of node `port`: with `keep`, every entry of
    /// another instance (a node starting clears what its previous run left);
    /// else only the entries of `instance` (the operator clearing a run it
    /// judged gone). Returns how many. Works through the node's user set a
    /// page of [`PRESENCE_BATCH`] at a time, one script call per page.
    pub async fn clear_presence(
        &self,
        port: u16,
        instance: &str,
        keep: bool,
    ) -> Result<u64, RegistryError> {
        let (removed, _) = self
            .clear_presence_paged(port, instance, keep, PRESENCE_BATCH)
            .await?;
        Ok(removed)
    }

    /// [`Registry::clear_presence`] with pages of `batch` members.
    pub(crate) async fn clear_presence_paged(
        &self,
        port: u16,
        instance: &str,
        keep: bool,
        batch: u32,
    ) -> Result<(u64, Pages), RegistryError> {
        let mut conn = self.conn();
        let (users, prefix) = (self.keys.node_users(port), self.keys.presence_prefix());
        let mode = if keep { "keep" } else { "drop" };
        let (mut cursor, mut removed, mut pages) = ("0".to_owned(), 0, Pages::default());
        loop {
            let (next, n, scanned): (String, u64, u64) = self
                .scripts()
                .clear_presence
                .key(&users)
                .arg(port)
                .arg(instance)
                .arg(&prefix)
                .arg(mode)
                .arg(&cursor)
                .arg(batch)
                .invoke_async(&mut conn)
                .await?;
            removed += n;
            pages.add(scanned);
            if next == "0" {
                return Ok((removed, pages));
            }
            cursor = next;
        }
    }
}

/// How a paged walk over a node's user set went (what tests check: how
/// many script calls, and the most members one call looked at).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pages {
    pub(crate) calls: u64,
    pub(crate) most_scanned: u64,
}

impl Pages {
    pub(crate) fn add(&mut self, scanned: u64) {
        self.calls += 1;
        self.most_scanned = self.most_scanned.max(scanned);
    }
}

#[cfg(test)]
mod tests;
