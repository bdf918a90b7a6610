//! The HTTP accept loop (used for the node port and the health port):
//! hyper HTTP/1.1 with upgrades, a deadline for request headers so a client
//! that connects and sends nothing cannot hold a socket forever, accept
//! errors (such as running out of file descriptors) survived, a cap on
//! connections in all and per client address (beyond it: a 503 and close),
//! and a graceful stop that finishes in-flight requests.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::shutdown::Signal;

/// How long in-flight HTTP requests get once the server stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many connections a port holds at once (0: no limit).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub total: usize,
    pub per_ip: usize,
}

impl ConnectionLimits {
    /// For the health port: probes and scrapes only.
    pub const NONE: ConnectionLimits = ConnectionLimits {
        total: 0,
        per_ip: 0,
    };
}

/// The connections open on one port, by client address.
#[derive(Default)]
struct Open {
    counts: Mutex<Counts>,
}

/// Connections open, in all and by client address (kept together, so an
/// accept never sums over every address).
#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Counts one connection while it lives: held by its HTTP task and, after
/// a WebSocket upgrade, by the WebSocket task (it reaches the handler in
/// the request's extensions).
struct Slot {
    open: Arc<Open>,
    ip: IpAddr,
}

/// A connection's place under the limits; the connection counts until
/// every clone is dropped.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<Slot>);

impl Open {
    /// A slot for a connection from `ip`, unless a limit is reached.
    fn take(self: &Arc<Self>, ip: IpAddr, limits: ConnectionLimits) -> Option<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let here = c.by_ip.get(&ip).copied().unwrap_or(0);
        if (limits.total > 0 && c.total >= limits.total)
            || (limits.per_ip > 0 && here >= limits.per_ip)
        {
            return None;
        }
        c.total += 1;
        *c.by_ip.entry(ip).or_default() += 1;
        Some(Slot {
            open: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.open.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(n) = c.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_ip.remove(&self.ip);
            }
        }
    }
}

/// What a connection over the limit is told before it is closed.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 74\r\nConnection: close\r\n\r\n{\"error\":\"unavailable\",\"message\":\"too many connections; try another node\"}";

/// Serves `app` on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let open: Arc<Open> = Arc::default();
    let stopping = Signal::default();
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE, ECONNABORTED, ...: back off briefly, keep serving
                // the connections already open.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = open.take(peer.ip(), limits) else {
            tracing::debug!(client = %peer.ip(), "connection refused: over the connection limit");
            connections.spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::io::AsyncWriteExt::write_all(&mut stream, OVER_LIMIT),
                )
                .await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let slot = ConnectionSlot(Arc::new(slot));
        let svc = app
            .clone()
            .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(slot.clone());
                req
            });
        let conn = http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
            .with_upgrades();
        let mut stop_rx = stopping.listen();
        connections.spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop_rx.wait() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.set();
    connections.close();
    if tokio::time::timeout(STOP_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the stop grace");
    }
}
