//! Starting, running and draining one node: bind the ports, build the store
//! and bus from the configuration, serve, keep the registry entry fresh, and
//! on shutdown drain the sessions, deregister and return.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::bus::local::LocalBus;
use crate::bus::rabbit::{RabbitBus, RabbitConfig};
use crate::bus::{Event, Inbound};
use crate::config::{Config, fill_advertise};
use crate::error::Error;
use crate::http::{self, AppState};
use crate::ids;
use crate::metrics::Metrics;
use crate::node::{Identity, Node};
use crate::serve;
use crate::session::Sessions;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Retention, Store};
use parley_cluster::registry::{HEARTBEAT_INTERVAL, NOT_READY_INTERVAL};

/// A node with its ports bound, ready to run.
pub struct Server {
    node: Arc<Node>,
    listener: TcpListener,
    health: Option<TcpListener>,
    /// The admin token was generated here (not configured).
    pub generated_admin_token: bool,
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

impl Server {
    /// Resolves identity and ports, binds, and builds the store and bus.
    pub async fn bind(cfg: Config) -> Result<Server, Error> {
        cfg.validate()?;
        if cfg.amqp_url.is_some() && cfg.redis_url.is_none() {
            return Err(Error::Config(
                "CHAT_AMQP_URL needs CHAT_REDIS_URL: the nodes of a cluster share inboxes and presence in Redis".into(),
            ));
        }
        let host = hostname();
        let ordinal = cfg.resolve_ordinal(&host);
        let listener = bind(SocketAddr::new(cfg.bind, cfg.resolve_port(ordinal)?)).await?;
        let port = listener.local_addr()?.port();
        let health = match cfg.health_port {
            0 => None,
            p => Some(bind(SocketAddr::new(cfg.bind, p)).await?),
        };
        let name = cfg.node_name.clone().unwrap_or_else(|| {
            if parley_cluster::ids::ordinal_from_hostname(&host) == Some(ordinal) {
                host.clone()
            } else {
                format!("chat-{ordinal}")
            }
        });
        let address = match &cfg.advertise {
            Some(t) => fill_advertise(t, &name, ordinal, port),
            None => format!("{host}:{port}"),
        };
        let id = Identity {
            name,
            ordinal,
            port,
            address,
            instance: cfg.instance_id.clone().unwrap_or_else(ids::session_id),
        };
        let retention = Retention {
            max_entries: cfg.inbox_retention_entries,
            max_age_ms: cfg.inbox_retention_days * 24 * 3600 * 1000,
        };
        let store: Arc<dyn Store> = match &cfg.redis_url {
            Some(url) => Arc::new(RedisStore::new(
                url,
                &cfg.cluster,
                retention,
                Duration::from_millis(cfg.redis_timeout_ms),
            )?),
            None => Arc::new(MemoryStore::new(retention)),
        };
        let sessions: Arc<Sessions> = Arc::default();
        let metrics = Metrics::new();
        let bus: Arc<dyn Bus> = match &cfg.amqp_url {
            Some(url) => {
                let inbound = inbound_handler(sessions.clone(), metrics.clone());
                let rabbit = RabbitConfig {
                    url: url.clone(),
                    cluster: cfg.cluster.clone(),
                    port,
                    instance: id.instance.clone(),
                };
                Arc::new(RabbitBus::start(rabbit, inbound, metrics.bus()))
            }
            None => Arc::new(LocalBus),
        };
        let generated_admin_token = cfg.admin_token.is_none();
        let admin_token = cfg.admin_token.clone().unwrap_or_else(ids::admin_token);
        let node = Arc::new(Node::new(
            cfg,
            id,
            admin_token,
            store,
            bus,
            sessions,
            metrics,
        ));
        Ok(Server {
            node,
            listener,
            health,
            generated_admin_token,
        })
    }

    /// The address the node serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.node.id.port)))
    }

    /// The health port's address, if enabled.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Serves until `shutdown` resolves, then drains: sessions get
    /// `reconnect` and `drain_grace` to leave before the node closes them
    /// (4009), the node deregisters, and this returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let node = self.node.clone();
        let connections = TaskTracker::new();
        let state = AppState {
            node: node.clone(),
            connections: connections.clone(),
        };
        let background = TaskTracker::new();
        let (stop_bg, _) = tokio::sync::watch::channel(false);

        let header_timeout = Duration::from_secs(node.cfg.http_header_timeout_s);
        if let Some(health) = self.health {
            let app = http::health_router().with_state(state.clone());
            let mut stop = stop_bg.subscribe();
            background.spawn(serve::serve(health, app, header_timeout, async move {
                crate::node::until_set(&mut stop).await;
            }));
        }
        let (stop_heartbeat, heartbeat_stop) = tokio::sync::watch::channel(false);
        let heartbeat_task = tokio::spawn(heartbeat(node.clone(), heartbeat_stop));
        background.spawn(clear_stale_presence(node.clone()));

        tracing::info!(
            node = %node.id.name, port = node.id.port, address = %node.id.address,
            cluster = %node.cfg.cluster,
            store = if node.cfg.redis_url.is_some() { "redis" } else { "memory" },
            "chat-node serving"
        );
        let drain_node = node.clone();
        let app = http::router(state);
        serve::serve(self.listener, app, header_timeout, async move {
            shutdown.await;
            tracing::info!("draining");
            drain_node.start_drain();
        })
        .await;

        // The listener is closed; sessions have been told to reconnect.
        connections.close();
        let grace = node.cfg.drain_grace() + Duration::from_secs(5);
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain grace; exiting anyway");
        }
        // Stop consuming, stop the heartbeat (so nothing re-registers the
        // node), then deregister; the health port goes last.
        node.bus.shutdown().await;
        stop_heartbeat.send_replace(true);
        let _ = heartbeat_task.await;
        if let Err(e) = node
            .store
            .deregister_node(node.id.port, &node.id.instance)
            .await
        {
            tracing::warn!(error = %e, "cannot deregister");
        }
        stop_bg.send_replace(true);
        background.close();
        background.wait().await;
        tracing::info!("drained; bye");
        Ok(())
    }
}

/// Keeps this node's registry entry fresh (online count, readiness,
/// heartbeat) until told to stop. While the node is not ready (backends
/// still connecting) it refreshes often, so it is routable as soon as it is.
async fn heartbeat(node: Arc<Node>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut drain = node.drain_signal();
    loop {
        let ready = node.ready().await;
        if let Err(e) = node.store.register_node(&node.record(ready)).await {
            tracing::warn!(error = %e, "cannot refresh registry entry");
        }
        let wait = if ready || node.is_draining() {
            HEARTBEAT_INTERVAL
        } else {
            NOT_READY_INTERVAL
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Say "not ready" at once when draining starts.
            _ = drain.changed() => {}
            _ = crate::node::until_set(&mut stop) => return,
        }
    }
}

/// Events from other nodes go to the local sessions.
fn inbound_handler(sessions: Arc<Sessions>, metrics: Metrics) -> Inbound {
    Arc::new(move |event: Event| match event {
        Event::Deliver {
            user,
            frame,
            except,
            message,
        } => {
            let frame = tokio_tungstenite::tungstenite::Utf8Bytes::from(frame);
            crate::node::deliver_local(
                &sessions,
                &metrics,
                &user,
                &frame,
                except.as_deref(),
                message,
            );
        }
        Event::Kick { user, token_hash } => {
            sessions.kick_token(&user, &token_hash);
        }
    })
}

/// A node that restarts on the same port inherits presence entries of its
/// previous run (if that run died without cleaning up): drop them, so no
/// delivery is routed here for sessions that no longer exist. Retries until
/// the store answers.
async fn clear_stale_presence(node: Arc<Node>) {
    let mut wait = Duration::from_millis(200);
    loop {
        match node
            .store
            .clear_presence(node.id.port, &node.id.instance, true)
            .await
        {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(removed = n, "cleared presence left by a previous run");
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot clear stale presence yet"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
