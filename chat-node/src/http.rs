//! HTTP on the node's port (and the health port): probes, metrics, token
//! administration, routing, the WebSocket upgrade at `/ws`, and the web
//! client at `/`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::ids;
use crate::node::Node;
use crate::protocol::{valid_platform, valid_user_id};
use crate::serve::ConnectionSlot;
use crate::store::{NodeRecord, StoreError, TokenRecord};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    pub node: Arc<Node>,
    /// Tracks WebSocket connections, so shutdown can wait for them.
    pub connections: TaskTracker,
}

/// The node's port: everything.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route("/v1/tokens", post(issue_token))
        .route("/v1/tokens/{token}", delete(revoke_token))
        .route("/v1/route", get(route))
        .route("/v1/nodes", get(nodes))
        .merge(health_router())
        .merge(crate::web::router())
        .with_state(state)
}

/// The health port: probes and metrics only.
pub fn health_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "message": message.into()})),
    )
        .into_response()
}

fn store_error(e: StoreError) -> Response {
    tracing::warn!(error = %e, "store error in HTTP handler");
    match e {
        StoreError::Unavailable(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is unavailable; retry",
        ),
        StoreError::Corrupt(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        ),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.node.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if s.node.ready().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "backends unavailable\n").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let ready = !s.node.is_draining() && s.node.ready().await;
    s.node.metrics.ready.set(i64::from(ready));
    let body = s.node.metrics.encode();
    let ct = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}

/// Checks `Authorization: Bearer <admin token>`; the refusal if it fails.
fn refuse_non_admin(node: &Node, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if ids::secret_eq(t.trim(), &node.admin_token) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        )),
    }
}

/// Largest body `POST /v1/tokens` reads.
const MAX_TOKEN_BODY: usize = 4096;

/// Reads a request body of at most `limit` bytes within `deadline`: a
/// client that announces a large body and sends nothing holds nothing.
async fn read_body(
    req: Request,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, Response> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(req.into_body(), limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body must be at most {limit} bytes"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the body did not arrive in time",
        )),
    }
}

async fn issue_token(State(s): State<AppState>, req: Request) -> Response {
    // The admin check comes before reading a byte of the body.
    if let Some(r) = refuse_non_admin(&s.node, req.headers()) {
        return r;
    }
    let body = match read_body(req, MAX_TOKEN_BODY, s.node.settings.http_header_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    #[derive(serde::Deserialize)]
    struct Body {
        user: String,
        platform: String,
    }
    let b: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("body must be {{\"user\":…,\"platform\":…}}: {e}"),
            );
        }
    };
    if !valid_user_id(&b.user) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "user must be 1 to 64 characters of A-Z a-z 0-9 _ . -",
        );
    }
    if !valid_platform(&b.platform) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "platform must be 1 to 16 characters of a-z 0-9",
        );
    }
    let token = ids::token(&b.platform);
    let record = TokenRecord {
        user: b.user,
        platform: b.platform,
        expires_at: ids::now_ms().saturating_add(s.node.settings.token_ttl.as_millis() as u64),
    };
    if let Err(e) = s
        .node
        .store
        .put_token(&ids::token_hash(&token), &record)
        .await
    {
        return store_error(e);
    }
    tracing::info!(user = %record.user, platform = %record.platform, "token issued");
    let body = json!({"token": token, "user": record.user, "platform": record.platform, "expires_at": record.expires_at});
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn revoke_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if let Some(r) = refuse_non_admin(&s.node, &headers) {
        return r;
    }
    let hash = ids::token_hash(&token);
    let jti = token.strip_prefix(crate::node::JTI_PREFIX);
    let deleted = match jti {
        Some(j) if j.is_empty() || j.len() > crate::jwt::MAX_JTI_BYTES => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("a jti is 1 to {} bytes", crate::jwt::MAX_JTI_BYTES),
            );
        }
        // A JWT's jti: refused from now on, whether or not a session used
        // it yet (so never "not found").
        Some(_) => {
            let now = ids::now_ms();
            let until = now.saturating_add(s.node.settings.jwt_revoked_ttl.as_millis() as u64);
            match s.node.store.revoke_jti(&hash, until, now).await {
                Ok(None) => {
                    tracing::info!("JWT jti revoked before any session used it");
                    return StatusCode::NO_CONTENT.into_response();
                }
                other => other,
            }
        }
        None => s.node.store.delete_token(&hash).await,
    };
    match deleted {
        Ok(Some(record)) => {
            tracing::info!(user = %record.user, platform = %record.platform, "token revoked");
            match s.node.hub.kick(&record.user, &hash).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                // The token is gone (no new session opens with it), but
                // live sessions elsewhere may not know yet: say so, so the
                // caller can retry; they end at their next token check.
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "token revoked, but its sessions on other nodes could not be told ({e}); they end at their next token check, within {} s",
                        s.node.settings.connection.token_check.as_secs()
                    ),
                ),
            }
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such token"),
        Err(e) => store_error(e),
    }
}

/// The ready node with the fewest connections, ties to the lowest port.
pub fn pick_route(nodes: &[NodeRecord], now_ms: u64) -> Option<&NodeRecord> {
    nodes
        .iter()
        .filter(|n| n.live(now_ms))
        .min_by_key(|n| (n.online, n.port))
}

async fn route(State(s): State<AppState>) -> Response {
    let nodes = match s.node.nodes().await {
        Ok(n) => n,
        Err(e) => return store_error(e),
    };
    match pick_route(&nodes, ids::now_ms()) {
        Some(n) => axum::Json(json!({"node": n.name, "address": n.address})).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no node is ready",
        ),
    }
}

async fn nodes(State(s): State<AppState>) -> Response {
    let nodes = match s.node.nodes().await {
        Ok(n) => n,
        Err(e) => return store_error(e),
    };
    let now = ids::now_ms();
    let list: Vec<_> = nodes
        .iter()
        .map(|n| json!({"node": n.name, "port": n.port, "address": n.address, "online": n.online, "ready": n.live(now)}))
        .collect();
    axum::Json(list).into_response()
}

/// The WebSocket handshake (RFC 6455), then the connection runs in its own
/// task on tokio-tungstenite with the node's frame limits and buffer sizes.
async fn upgrade(State(s): State<AppState>, mut req: Request) -> Response {
    if s.node.is_draining() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "node draining; ask /v1/route for another",
        );
    }
    let h = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "bad_request",
            "/ws speaks WebSocket only",
        );
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Sec-WebSocket-Version must be 13",
        );
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing Sec-WebSocket-Key",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "connection cannot be upgraded",
        );
    };
    let node = s.node.clone();
    let cfg = ws_config(&node);
    // The connection stays counted against the limits while it lives.
    let slot = req.extensions().get::<ConnectionSlot>().cloned();
    let fut = async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(cfg),
                )
                .await;
                connection::serve(node, ws).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    };
    s.connections.spawn(fut);
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Frame limits and buffers: small read buffer (memory per idle
/// connection), eager writes (we flush every frame anyway). The write
/// buffer is sized from the largest reply, not from the largest frame a
/// client may send: the two limits are unrelated.
fn ws_config(node: &Node) -> WebSocketConfig {
    let c = &node.settings.connection;
    WebSocketConfig::default()
        .read_buffer_size(c.read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(write_buffer_bytes(c.max_reply_bytes))
        .max_message_size(Some(c.max_frame_bytes))
        .max_frame_size(Some(c.max_frame_bytes))
}

/// Room for one reply of the largest size, its frame header, and the
/// deliveries queued behind it.
fn write_buffer_bytes(max_reply_bytes: usize) -> usize {
    max_reply_bytes * 2 + 64 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_cluster::registry::STALE_AFTER_MS;

    fn n(port: u16, online: u64, ready: bool, heartbeat_ms: u64) -> NodeRecord {
        NodeRecord {
            port,
            name: format!("chat-{port}"),
            address: String::new(),
            ready,
            online,
            heartbeat_ms,
            instance: String::new(),
        }
    }

    #[test]
    fn route_picks_the_least_loaded_live_ready_node() {
        let now = 100_000;
        let nodes = vec![
            n(8750, 10, true, now),
            n(8760, 3, true, now - 1000),
            n(8770, 1, false, now),                 // not ready
            n(8780, 0, true, now - STALE_AFTER_MS), // stale: died without cleanup
        ];
        assert_eq!(pick_route(&nodes, now).map(|n| n.port), Some(8760));
        assert_eq!(pick_route(&nodes[2..], now), None);
        let tie = vec![n(8760, 2, true, now), n(8750, 2, true, now)];
        assert_eq!(pick_route(&tie, now).map(|n| n.port), Some(8750));
    }
}
