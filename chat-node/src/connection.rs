//! One WebSocket connection, from first frame to close: authentication
//! within `auth_timeout`, then a loop that serves requests in order,
//! forwards deliveries, enforces the rate and idle limits, and follows the
//! node's drain. Every failure ends only this connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::FusedStream;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

use crate::command::{self, SessionCtx, error_frame};
use crate::ids;
use crate::metrics::StateGauge;
use crate::node::Node;
use crate::protocol::client::{self, Command, Request};
use crate::protocol::server::ServerFrame;
use crate::protocol::{ErrorCode, ProtoError, close};
use crate::ratelimit::{RateLimit, Verdict};
use crate::session::{Registration, SessionHandle, Stop, StopReason};

/// A client that does not take a frame within this time is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's answer to our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one upgraded WebSocket until it closes.
pub async fn serve<S>(node: Arc<Node>, ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    node.metrics.connections_open.inc();
    let mut state = StateGauge::new(&node.metrics, "authenticating");
    let c = &node.settings.connection;
    let limiter = RateLimit::new(c.rate_per_s, c.rate_burst, std::time::Instant::now());
    let mut conn = Conn {
        ws,
        node: node.clone(),
        limiter,
    };
    // Boxed: request-time futures live on the heap only while they run, so
    // the long-lived connection task stays small (memory per idle session).
    if let Some(session) = Box::pin(conn.authenticate()).await {
        state.set("active");
        let user = session.ctx.user.clone();
        conn.run(session, &mut state).await;
        // `run` consumed the session: it is deregistered here by now.
        node.leave(&user).await;
    }
    node.metrics.connections_open.dec();
}

/// The authenticated side of a connection.
struct Session {
    ctx: SessionCtx,
    token_hash: Arc<str>,
    /// When its token expires (ms since the Unix epoch).
    expires_at_ms: u64,
    rx: mpsc::Receiver<Utf8Bytes>,
    /// Bytes waiting in `rx` (shared with the session's handle).
    queued: Arc<AtomicUsize>,
    stop: Arc<Stop>,
    _registration: Registration,
}

/// How a loop step ends the connection, if it does.
enum Flow {
    Continue,
    Close,
}

struct Conn<S> {
    ws: WebSocketStream<S>,
    node: Arc<Node>,
    limiter: RateLimit,
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Waits for a valid `connect`; `None` when the connection ended.
    async fn authenticate(&mut self) -> Option<Session> {
        let deadline = Instant::now() + self.node.settings.connection.auth_timeout;
        let mut drain = self.node.drain_signal();
        loop {
            let incoming = tokio::select! {
                _ = sleep_until(deadline) => {
                    self.close(close::TIMEOUT, "no connect in time").await;
                    return None;
                }
                _ = drain.wait() => {
                    self.close(close::DRAINING, "node draining").await;
                    return None;
                }
                incoming = self.ws.next() => incoming,
            };
            let text = match incoming {
                None => return None,
                Some(Err(e)) => {
                    self.read_failed(e).await;
                    return None;
                }
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(WsMessage::Binary(_))) => {
                    self.refuse_unauthorized(None, "the first frame must be a connect text frame")
                        .await;
                    return None;
                }
                // Control frames: tungstenite answers pings and closes itself.
                Some(Ok(_)) => continue,
            };
            if self.limiter.check(std::time::Instant::now()) == Verdict::Close {
                self.close(close::POLICY, "rate limit").await;
                return None;
            }
            let (rid, token, device) =
                match client::parse(&text, &self.node.settings.connection.limits) {
                    Ok(Request {
                        rid,
                        command: Command::Connect { token, device },
                    }) => (rid, token, device),
                    Ok(Request { rid, .. }) => {
                        self.refuse_unauthorized(rid.as_deref(), "the first frame must be connect")
                            .await;
                        return None;
                    }
                    Err(r) => {
                        let msg = format!(
                            "the first frame must be a valid connect: {}",
                            r.error.message
                        );
                        self.refuse_unauthorized(r.rid.as_deref(), &msg).await;
                        return None;
                    }
                };
            self.node.metrics.frame("connect");
            match self.open_session(&token, &device, rid.as_deref()).await {
                Ok(Some(session)) => return Some(session),
                Ok(None) => {
                    self.refuse_unauthorized(rid.as_deref(), "unknown, expired or revoked token")
                        .await;
                    return None;
                }
                Err(e) => {
                    // The store is down: say so and let the client retry.
                    // Anything else ends the connection (4003).
                    self.node.metrics.error(e.code);
                    if self
                        .send_text(error_frame(&e, rid.as_deref(), None))
                        .await
                        .is_err()
                    {
                        return None;
                    }
                    if e.code != ErrorCode::Unavailable {
                        self.close(close::POLICY, "too many sessions").await;
                        return None;
                    }
                }
            }
        }
    }

    /// Checks the token, registers the session and answers `connected`.
    async fn open_session(
        &mut self,
        token: &str,
        device: &str,
        rid: Option<&str>,
    ) -> Result<Option<Session>, ProtoError> {
        let unavailable = |_| {
            ProtoError::new(
                ErrorCode::Unavailable,
                "the session store is unavailable; retry",
            )
        };
        let Some((token_hash, record)) = self
            .node
            .check_connect_token(token)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let token_hash: Arc<str> = token_hash.into();
        let user: Arc<str> = record.user.into();
        let id: Arc<str> = ids::session_id().into();
        let (tx, rx) = mpsc::channel(self.node.settings.connection.outbound_queue);
        let stop = Arc::new(Stop::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let handle = SessionHandle {
            id: id.clone(),
            token_hash: token_hash.clone(),
            tx,
            stop: stop.clone(),
            queued: queued.clone(),
        };
        // Register here and in presence before reading `pts` (one round
        // trip with the presence write), so nothing stored from now on can
        // slip between the two: it is either below `pts` or delivered. The
        // same step checks the token again: a revocation since the check
        // above is refused here, a later one finds this session registered.
        let registration = self
            .node
            .hub
            .sessions()
            .add(user.clone(), handle)
            .map_err(|_| {
                ProtoError::new(
                    ErrorCode::Forbidden,
                    "this user holds as many sessions on this node as allowed; close one",
                )
            })?;
        let joined = self.node.join(&user, &token_hash).await;
        let pts = match joined {
            Ok(Some(pts)) => pts,
            Ok(None) | Err(_) => {
                drop(registration);
                self.node.leave(&user).await;
                return match joined {
                    Err(e) => Err(unavailable(e)),
                    _ => Ok(None),
                };
            }
        };
        let connected = ServerFrame::Connected {
            user: &user,
            session: &id,
            node: &self.node.id.name,
            pts,
            heartbeat_s: self.node.settings.connection.heartbeat_s,
            rid,
        }
        .to_json();
        if self.send_text(connected).await.is_err() {
            drop(registration);
            self.node.leave(&user).await;
            return Err(ProtoError::new(ErrorCode::Internal, "connection lost"));
        }
        tracing::debug!(user = %user, session = %id, device, "session opened");
        Ok(Some(Session {
            ctx: SessionCtx {
                user,
                session: id,
                typing: Arc::default(),
            },
            token_hash,
            expires_at_ms: record.expires_at,
            rx,
            queued,
            stop,
            _registration: registration,
        }))
    }

    /// Serves an authenticated session until it ends.
    async fn run(&mut self, s: Session, state: &mut StateGauge) {
        let mut s = s;
        let idle = self.node.settings.connection.idle_timeout;
        let mut last_seen = Instant::now();
        let mut drain = self.node.drain_signal();
        // Once draining: when this session is told (its paced slot) and
        // where to go, and when it is closed if it has not left by then.
        let mut drain_slot: Option<(Instant, Option<String>)> = None;
        let mut drain_deadline: Option<Instant> = None;
        let expires = instant_at(s.expires_at_ms);
        let mut next_check = Instant::now() + jittered(self.node.settings.connection.token_check);
        loop {
            let flow = tokio::select! {
                biased;
                reason = s.stop.triggered() => {
                    Box::pin(self.stopped(reason)).await;
                    Flow::Close
                }
                _ = sleep_until(expires) => {
                    Box::pin(self.stopped(StopReason::TokenExpired)).await;
                    Flow::Close
                }
                _ = sleep_until(next_check) => {
                    next_check = Instant::now() + jittered(self.node.settings.connection.token_check);
                    // A revocation whose kick never arrived ends the session
                    // here; a store that does not answer ends nothing.
                    match self.node.check_token_hash(&s.token_hash).await {
                        Ok(None) => {
                            Box::pin(self.stopped(StopReason::TokenRevoked)).await;
                            Flow::Close
                        }
                        Ok(Some(_)) | Err(_) => Flow::Continue,
                    }
                }
                Some(frame) = s.rx.recv() => {
                    s.queued.fetch_sub(frame.len(), Ordering::Relaxed);
                    match self.send(WsMessage::Text(frame)).await {
                        Ok(()) => Flow::Continue,
                        Err(()) => Flow::Close,
                    }
                }
                incoming = self.ws.next() => {
                    last_seen = Instant::now();
                    Box::pin(self.incoming(&s.ctx, incoming)).await
                }
                _ = sleep_until(last_seen + idle) => {
                    Box::pin(self.close(close::TIMEOUT, "idle")).await;
                    Flow::Close
                }
                _ = drain.wait(), if drain_deadline.is_none() => {
                    state.set("draining");
                    drain_deadline = Some(self.node.drain.deadline());
                    drain_slot = Some(self.node.drain.slot());
                    Flow::Continue
                }
                _ = sleep_until(drain_slot.as_ref().map_or(last_seen, |s| s.0)), if drain_slot.is_some() => {
                    let address = drain_slot.take().and_then(|s| s.1);
                    let frame = ServerFrame::Reconnect {
                        reason: "draining",
                        address: address.as_deref(),
                    }
                    .to_json();
                    match self.send_text(frame).await {
                        Ok(()) => Flow::Continue,
                        Err(()) => Flow::Close,
                    }
                }
                _ = sleep_until(drain_deadline.unwrap_or(last_seen)), if drain_deadline.is_some() => {
                    Box::pin(self.close(close::DRAINING, "node draining")).await;
                    Flow::Close
                }
            };
            if let Flow::Close = flow {
                tracing::debug!(user = %s.ctx.user, session = %s.ctx.session, "session closed");
                return;
            }
        }
    }

    /// Handles one frame (or read failure) of an authenticated session.
    async fn incoming(
        &mut self,
        s: &SessionCtx,
        incoming: Option<Result<WsMessage, WsError>>,
    ) -> Flow {
        // A ping costs a token like any frame; tungstenite answers it.
        let is_binary = matches!(incoming, Some(Ok(WsMessage::Binary(_))));
        let text = match incoming {
            None | Some(Ok(WsMessage::Close(_))) => return Flow::Close,
            Some(Err(e)) => {
                self.read_failed(e).await;
                return Flow::Close;
            }
            Some(Ok(WsMessage::Text(t))) => Some(t),
            Some(Ok(WsMessage::Binary(_))) | Some(Ok(WsMessage::Ping(_))) => None,
            Some(Ok(_)) => return Flow::Continue,
        };
        // Every frame costs a token before it is even parsed.
        let verdict = self.limiter.check(std::time::Instant::now());
        if let Some(flow) = self
            .rate_verdict(verdict, text.as_deref().and_then(peek_rid).as_deref())
            .await
        {
            return flow;
        }
        let Some(text) = text else {
            if is_binary {
                let err = ProtoError::bad_request(
                    "binary frames are not supported; send JSON text frames",
                );
                return self.refuse(&err, None, None).await;
            }
            return Flow::Continue; // a ping; tungstenite answers it
        };
        let started = Instant::now();
        let req = match client::parse(&text, &self.node.settings.connection.limits) {
            Ok(req) => req,
            Err(r) => {
                return self
                    .refuse(&r.error, r.rid.as_deref(), r.id.as_deref())
                    .await;
            }
        };
        // Pages cost the rest of their price once their size is known.
        let extra = req.command.cost() - 1;
        if extra > 0 {
            let verdict = self.limiter.check_cost(std::time::Instant::now(), extra);
            if let Some(flow) = self.rate_verdict(verdict, req.rid.as_deref()).await {
                return flow;
            }
        }
        let name = req.command.name();
        self.node.metrics.frame(name);
        let outcome = command::dispatch(&self.node, s, req).await;
        // `typing` has no reply.
        if !outcome.reply.is_empty() && self.send_text(outcome.reply).await.is_err() {
            return Flow::Close;
        }
        if name == "send" {
            self.node
                .metrics
                .send_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        if !outcome.deliveries.is_empty() {
            self.node
                .hub
                .fan_out(outcome.deliveries, outcome.routes)
                .await;
        }
        Flow::Continue
    }

    /// Acts on a refused rate-limit verdict: `rate_limited` (the connection
    /// stays) or close 4003; `None` when the frame may go on.
    async fn rate_verdict(&mut self, verdict: Verdict, rid: Option<&str>) -> Option<Flow> {
        match verdict {
            Verdict::Allow => None,
            Verdict::Refuse => {
                let err = ProtoError::new(ErrorCode::RateLimited, "too many frames; slow down");
                Some(self.refuse(&err, rid, None).await)
            }
            Verdict::Close => {
                self.node.metrics.error(ErrorCode::RateLimited);
                self.close(close::POLICY, "rate limit abuse").await;
                Some(Flow::Close)
            }
        }
    }

    /// Sends an `error` that leaves the connection open.
    async fn refuse(&mut self, err: &ProtoError, rid: Option<&str>, id: Option<&str>) -> Flow {
        self.node.metrics.error(err.code);
        match self.send_text(error_frame(err, rid, id)).await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Close,
        }
    }

    /// `error` `unauthorized`, then close 4001.
    async fn refuse_unauthorized(&mut self, rid: Option<&str>, message: &str) {
        let err = ProtoError::new(ErrorCode::Unauthorized, message);
        self.node.metrics.error(err.code);
        if self.send_text(error_frame(&err, rid, None)).await.is_ok() {
            self.close(close::UNAUTHORIZED, "unauthorized").await;
        }
    }

    /// The node ended the session: revoked token or too slow.
    async fn stopped(&mut self, reason: StopReason) {
        match reason {
            StopReason::TokenRevoked | StopReason::TokenExpired => {
                let reason = if reason == StopReason::TokenRevoked {
                    "token_revoked"
                } else {
                    "token_expired"
                };
                let frame = ServerFrame::Kicked { reason }.to_json();
                if self.send_text(frame).await.is_ok() {
                    self.close(close::KICKED, "token no longer valid").await;
                }
            }
            StopReason::TooSlow => {
                self.node.metrics.sessions_stopped_slow.inc();
                self.close(
                    close::TRY_AGAIN_LATER,
                    "too slow to keep up; reconnect and sync",
                )
                .await;
            }
        }
    }

    /// A read failed: answer what can be answered, then the connection ends.
    async fn read_failed(&mut self, e: WsError) {
        match e {
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                let err = ProtoError::new(
                    ErrorCode::TooLarge,
                    format!("frame of {size} bytes is over the limit of {max_size}"),
                );
                self.node.metrics.error(err.code);
                if self.send_text(error_frame(&err, None, None)).await.is_ok() {
                    self.close(close::TOO_LARGE, "frame too large").await;
                }
            }
            WsError::Utf8(_) => self.close(1007, "text frame is not UTF-8").await,
            WsError::Protocol(p) => {
                tracing::debug!(error = %p, "WebSocket protocol error");
                self.close(1002, "protocol error").await;
            }
            other => tracing::debug!(error = %other, "connection failed"),
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), ()> {
        self.send(WsMessage::Text(text.into())).await
    }

    /// Writes one frame; a client that does not take it in time is gone.
    async fn send(&mut self, msg: WsMessage) -> Result<(), ()> {
        match timeout(WRITE_TIMEOUT, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            // A client that went away is ordinary; a frame this node could
            // not write (a full write buffer, say) is a bug to see.
            Ok(Err(e @ (WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)))) => {
                tracing::debug!(error = %e, "write failed: the client is gone");
                Err(())
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "write failed; closing the connection");
                Err(())
            }
            Err(_) => {
                // As much a slow consumer as one whose queue overflowed
                // (which cannot be told 1013 while this write is stuck).
                tracing::debug!("write timed out");
                self.node.metrics.sessions_stopped_slow.inc();
                Err(())
            }
        }
    }

    /// Sends a close frame and waits briefly for the client's answer, so the
    /// close frame is not lost to a reset.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        if timeout(WRITE_TIMEOUT, self.ws.close(Some(frame)))
            .await
            .is_err()
        {
            return;
        }
        // A stream that already failed (say, after an oversize frame) has
        // lost its framing: skip the close handshake and just drain.
        let mut framing_lost = FusedStream::is_terminated(&self.ws);
        if !framing_lost {
            let _ = timeout(CLOSE_TIMEOUT, async {
                loop {
                    match self.ws.next().await {
                        Some(Ok(_)) => continue,
                        None => return,
                        Some(Err(_)) => {
                            framing_lost = true;
                            return;
                        }
                    }
                }
            })
            .await;
        }
        if framing_lost {
            // Closing a socket with unread bytes resets it, and the reset can
            // destroy the frames we just sent: read what is pending first,
            // but no longer than the close timeout and no more than a
            // frame's worth, whatever the client keeps sending.
            let mut buf = [0u8; 4096];
            let until = Instant::now() + CLOSE_TIMEOUT;
            let mut left = self.node.settings.connection.max_frame_bytes;
            while left > 0 {
                let wait = until.saturating_duration_since(Instant::now());
                match timeout(
                    wait.min(Duration::from_millis(100)),
                    self.ws.get_mut().read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                    _ => break,
                }
            }
        }
    }
}

/// The instant of a wall-clock time (ms since the Unix epoch); far future
/// values are capped, so the arithmetic cannot overflow.
fn instant_at(ms: u64) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let left = Duration::from_millis(ms.saturating_sub(ids::now_ms()));
    Instant::now() + left.min(YEAR)
}

/// `d` give or take a half, so the sessions of one node do not all check
/// at the same moment.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..1.5))
}

/// The `rid` of a frame we will not otherwise parse (a rate-limited one).
fn peek_rid(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Rid {
        rid: Option<String>,
    }
    serde_json::from_str::<Rid>(text)
        .ok()
        .and_then(|r| r.rid)
        .filter(|r| r.len() <= client::MAX_ID_BYTES)
}
