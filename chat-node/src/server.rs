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
use crate::config::{Config, fill_advertise};
use crate::error::Error;
use crate::http::{self, AppState};
use crate::ids;
use crate::node::{HEARTBEAT_INTERVAL, Identity, Node};
use crate::serve;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Retention, Store};

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
        if cfg.amqp_url.is_some() {
            return Err(Error::Config(
                "CHAT_AMQP_URL is not supported by this build yet; unset it to run one node on the in-process bus".into(),
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
            if crate::config::ordinal_from_hostname(&host) == Some(ordinal) {
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
        let bus: Arc<dyn Bus> = Arc::new(LocalBus);
        let generated_admin_token = cfg.admin_token.is_none();
        let admin_token = cfg.admin_token.clone().unwrap_or_else(ids::admin_token);
        let node = Arc::new(Node::new(cfg, id, admin_token, store, bus));
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
        background.spawn(heartbeat(node.clone(), stop_bg.subscribe()));

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
/// heartbeat) until told to stop.
async fn heartbeat(node: Arc<Node>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain = node.drain_signal();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // Say "not ready" at once when draining starts.
            _ = drain.changed() => {}
            _ = crate::node::until_set(&mut stop) => return,
        }
        if *stop.borrow() {
            return;
        }
        let ready = node.ready().await;
        if let Err(e) = node.store.register_node(&node.record(ready)).await {
            tracing::warn!(error = %e, "cannot refresh registry entry");
        }
    }
}
