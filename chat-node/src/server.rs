//! Starting, running and draining one node: bind the ports, build the store
//! and bus from the configuration, serve, keep the registry entry fresh, and
//! on shutdown drain the sessions, deregister and return.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parley_cluster::registry::{HEARTBEAT_INTERVAL, NOT_READY_INTERVAL};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::archive::Archive;
use crate::bus::Bus;
use crate::bus::local::LocalBus;
use crate::bus::rabbit::{RabbitBus, RabbitConfig};
use crate::config::{Config, fill_advertise};
use crate::error::Error;
use crate::http::{self, AppState};
use crate::hub::Hub;
use crate::ids;
use crate::metrics::Metrics;
use crate::node::{Identity, Node};
use crate::push::Pusher;
use crate::serve::{self, ConnectionLimits};
use crate::session::Sessions;
use crate::shutdown::{Listener, Signal};
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::redis::archiver::Archiver;
use crate::store::{PushFeed, Store};

/// How long an archive statement waits for a connection.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A node with its ports bound, ready to run.
pub struct Server {
    node: Arc<Node>,
    listener: TcpListener,
    health: Option<TcpListener>,
    /// Drains the archive feed into SQL, when this node runs one.
    archiver: Option<Archiver>,
    /// Delivers the push feed to the webhook, when one is configured.
    pusher: Option<Pusher>,
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
        let settings = cfg.settings()?;
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
            cluster: cfg.cluster.clone(),
            name,
            port,
            address,
            instance: cfg.instance_id.clone().unwrap_or_else(ids::session_id),
        };
        let metrics = Metrics::new();
        let archive = match &settings.archive {
            Some(a) => Some(Arc::new(
                Archive::connect_lazy(&a.url, ARCHIVE_TIMEOUT)
                    .map_err(|e| Error::Config(e.to_string()))?,
            )),
            None => None,
        };
        let mut archiver = None;
        // Named like the archiver: the operator removes both for a gone run.
        let consumer = parley_cluster::archive::consumer_name(port, &id.instance);
        let mut push_feed: Option<Arc<dyn PushFeed>> = None;
        let store: Arc<dyn Store> = match &cfg.redis_url {
            Some(url) => {
                let mut redis =
                    RedisStore::new(url, &id.cluster, settings.retention, settings.redis_timeout)?
                        .with_client_id_ttl(settings.client_id_ttl);
                if let Some(p) = &settings.push {
                    redis = redis.with_push(p.max_queue as u64);
                    push_feed = redis
                        .push_feed(consumer.clone(), p.claim_after)?
                        .map(|f| Arc::new(f) as Arc<dyn PushFeed>);
                }
                if let (Some(sql), Some(a)) = (&archive, &settings.archive) {
                    redis = redis.with_archive(sql.clone(), a.max_lag);
                    if let Some(s) = &a.archiver {
                        archiver = redis.archiver(
                            s.clone(),
                            consumer.clone(),
                            metrics.archiver.clone(),
                        )?;
                    }
                }
                Arc::new(redis)
            }
            None => {
                let mut memory =
                    MemoryStore::new(settings.retention).with_client_id_ttl(settings.client_id_ttl);
                if let (Some(sql), Some(a)) = (&archive, &settings.archive) {
                    memory = memory.with_archive(sql.clone(), a.hot_messages, a.hot);
                }
                if let Some(p) = &settings.push {
                    memory = memory.with_push(p.max_queue, p.max_queue_bytes);
                }
                let memory = Arc::new(memory);
                if settings.push.is_some() {
                    push_feed = Some(memory.clone());
                }
                memory
            }
        };
        // The hub first: the bus hands it what other nodes send.
        let sessions = Sessions::new(
            settings.connection.max_sessions_per_user,
            settings.connection.outbound_queue_bytes,
        );
        let hub = Arc::new(Hub::new(
            Arc::new(sessions),
            metrics.clone(),
            store.clone(),
            port,
        ));
        let bus: Arc<dyn Bus> = match &cfg.amqp_url {
            Some(url) => {
                let rabbit = RabbitConfig {
                    url: url.clone(),
                    cluster: id.cluster.clone(),
                    port,
                    instance: id.instance.clone(),
                };
                Arc::new(RabbitBus::start(rabbit, hub.clone(), metrics.bus()))
            }
            None => Arc::new(LocalBus),
        };
        hub.attach(bus);
        let generated_admin_token = cfg.admin_token.is_none();
        let admin_token = cfg.admin_token.clone().unwrap_or_else(ids::admin_token);
        let jwt = if settings.jwt.enabled() {
            Some(crate::jwt::JwtVerifier::new(&settings.jwt).map_err(Error::Config)?)
        } else {
            None
        };
        let pusher = match (&settings.push, push_feed) {
            (Some(p), Some(feed)) => Some(
                Pusher::new(p.clone(), feed, store.clone(), metrics.push.clone())
                    .map_err(Error::Config)?,
            ),
            _ => None,
        };
        let (jwt_on, push_on) = (jwt.is_some(), pusher.is_some());
        let node =
            Arc::new(Node::new(id, settings, admin_token, store, hub, metrics).with_jwt(jwt));
        tracing::info!(
            node = %node.id.name, port, address = %node.id.address, cluster = %node.id.cluster,
            store = if cfg.redis_url.is_some() { "redis" } else { "memory" },
            bus = if cfg.amqp_url.is_some() { "rabbitmq" } else { "local" },
            archive = archive.as_ref().map_or("none", |a| a.engine().into()),
            archiver = archiver.is_some(),
            jwt = jwt_on,
            push = push_on,
            "chat-node bound"
        );
        Ok(Server {
            node,
            listener,
            health,
            archiver,
            pusher,
            generated_admin_token,
        })
    }

    /// The address the node serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.node.id.port)))
    }

    /// The bearer secret of `/v1/tokens` (configured, or generated here).
    pub fn admin_token(&self) -> &str {
        &self.node.admin_token
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
        let stop_bg = Signal::default();

        let header_timeout = node.settings.http_header_timeout;
        if let Some(health) = self.health {
            let app = http::health_router().with_state(state.clone());
            let mut stop = stop_bg.listen();
            background.spawn(serve::serve(
                health,
                app,
                header_timeout,
                ConnectionLimits::NONE,
                async move {
                    stop.wait().await;
                },
            ));
        }
        let stop_archiver = Signal::default();
        let archiver_task = self
            .archiver
            .map(|a| tokio::spawn(a.run(stop_archiver.listen())));
        let pusher_task = self
            .pusher
            .map(|p| tokio::spawn(p.run(stop_archiver.listen())));
        let stop_heartbeat = Signal::default();
        let heartbeat_task = tokio::spawn(heartbeat(node.clone(), stop_heartbeat.listen()));
        background.spawn(clear_stale_presence(node.clone()));

        tracing::info!(node = %node.id.name, port = node.id.port, "chat-node serving");
        let drain_node = node.clone();
        let app = http::router(state);
        let limits = ConnectionLimits {
            total: node.settings.max_connections,
            per_ip: node.settings.max_connections_per_ip,
        };
        serve::serve(self.listener, app, header_timeout, limits, async move {
            shutdown.await;
            tracing::info!("draining");
            drain_node.start_drain().await;
        })
        .await;

        // The listener is closed; sessions have been told to reconnect.
        connections.close();
        let grace = node.settings.connection.drain_grace + Duration::from_secs(5);
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain grace; exiting anyway");
        }
        // Stop consuming, stop the heartbeat (so nothing re-registers the
        // node), then deregister; the health port goes last.
        if let Some(bus) = node.hub.bus() {
            bus.shutdown().await;
        }
        // No more sends here: the archiver finishes its batch (what it
        // cannot write stays pending for the other archivers), the pusher
        // its attempts under way (what is left stays pending for the other
        // pushers).
        stop_archiver.set();
        for t in [archiver_task, pusher_task].into_iter().flatten() {
            let _ = t.await;
        }
        stop_heartbeat.set();
        let _ = heartbeat_task.await;
        if let Err(e) = node
            .store
            .deregister_node(node.id.port, &node.id.instance)
            .await
        {
            tracing::warn!(error = %e, "cannot deregister");
        }
        stop_bg.set();
        background.close();
        background.wait().await;
        tracing::info!("drained; bye");
        Ok(())
    }
}

/// Keeps this node's registry entry fresh (online count, readiness,
/// heartbeat) until told to stop. While the node is not ready (backends
/// still connecting) it refreshes often, so it is routable as soon as it is.
async fn heartbeat(node: Arc<Node>, mut stop: Listener) {
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
            _ = drain.wait(), if !node.is_draining() => {}
            _ = stop.wait() => return,
        }
    }
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
