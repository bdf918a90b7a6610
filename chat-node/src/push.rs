//! The offline push webhook (DESIGN.md, "Offline push"): a message stored
//! for a user with no live session anywhere is handed to the application's
//! `CHAT_PUSH_WEBHOOK_URL`, which sends the push notification.
//!
//! A send only puts the push in a bounded queue (in events and in bytes;
//! when full the push is dropped and counted) and never waits for it.
//! Background tasks, at most `concurrency` at once, POST each event with a
//! deadline and retry it with exponential backoff until it is accepted
//! (2xx), refused for good (4xx but 408 and 429), or `retry_for` has passed
//! since it was queued. Each event keeps its id (`<message id>:<user>`) and
//! its body across attempts, so the receiver dedupes by `id`: delivery is at
//! least once while the node runs (the queue is in memory).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, mpsc};

use crate::protocol::Message;
use crate::store::Store;

/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long reading the receiver's unread count may take before the push
/// goes without it.
const UNREAD_TIMEOUT: Duration = Duration::from_secs(1);
/// The header carrying the body's HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-parley-signature";
/// The header carrying the event id (also in the body), and the attempt.
pub const EVENT_HEADER: &str = "x-parley-event";
pub const ATTEMPT_HEADER: &str = "x-parley-attempt";

/// Where and how pushes go.
#[derive(Clone)]
pub struct PushSettings {
    /// An `http://host[:port]/path` URL.
    pub url: String,
    /// HMAC-SHA256 key of the `X-Parley-Signature` header.
    pub secret: String,
    /// How long an event is retried after it was queued.
    pub retry_for: Duration,
    /// Deadline of one attempt (connect, request, response head).
    pub timeout: Duration,
    /// Most events waiting or in flight.
    pub max_queue: usize,
    /// Most bytes of event bodies waiting or in flight.
    pub max_queue_bytes: usize,
    /// Most attempts in flight at once.
    pub concurrency: usize,
}

impl std::fmt::Debug for PushSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("PushSettings")
            .field("url", &self.url)
            .field("retry_for", &self.retry_for)
            .field("timeout", &self.timeout)
            .field("max_queue", &self.max_queue)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Checks a webhook URL: plain `http` with a host (TLS is for a sidecar or
/// an in-cluster receiver; see the README).
pub fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL ({e}): {url}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "only http:// URLs are supported (got {url}); put a TLS proxy in front of an https receiver"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("the URL has no host: {url}"));
    }
    Ok(uri)
}

/// `result` label of `chat_push_webhook_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// The webhook's metrics.
#[derive(Clone, Debug, Default)]
pub struct PushMetrics {
    /// Events `sent` (accepted), attempts `retried`, events `dropped` (queue
    /// full) and `failed` (refused for good or out of retry time).
    pub results: Family<ResultLabel, Counter>,
    /// Events waiting or in flight.
    pub queued: Gauge,
}

/// Every `result` of `chat_push_webhook_total` (each starts at zero).
pub const RESULTS: [&str; 4] = ["sent", "retried", "dropped", "failed"];

impl PushMetrics {
    fn count(&self, result: &'static str) {
        self.results.get_or_create(&ResultLabel { result }).inc();
    }
}

/// One push to deliver.
struct Event {
    id: String,
    user: String,
    /// The message as JSON.
    msg: String,
    queued_at: Instant,
}

impl Event {
    /// What it holds of the queue's byte budget.
    fn bytes(&self) -> usize {
        self.id.len() + self.user.len() + self.msg.len() + 96
    }
}

struct Inner {
    tx: mpsc::Sender<Event>,
    pending: AtomicUsize,
    pending_bytes: AtomicUsize,
    settings: PushSettings,
    uri: Uri,
    key: hmac::Key,
    metrics: PushMetrics,
    store: Arc<dyn Store>,
}

/// The webhook's queue; cheap to clone.
#[derive(Clone)]
pub struct Push {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("url", &self.inner.settings.url)
            .finish()
    }
}

impl Push {
    /// Starts the delivery task (it ends when the last `Push` is dropped).
    pub fn start(
        settings: PushSettings,
        store: Arc<dyn Store>,
        metrics: PushMetrics,
    ) -> Result<Push, String> {
        let uri = check_url(&settings.url)?;
        let (tx, rx) = mpsc::channel(settings.max_queue.max(1));
        let inner = Arc::new(Inner {
            tx,
            pending: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            key: hmac::Key::new(hmac::HMAC_SHA256, settings.secret.as_bytes()),
            uri,
            settings,
            metrics,
            store,
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner), rx));
        Ok(Push { inner })
    }

    /// Queues a push of `msg` for `user`, who has no live session; drops it
    /// (counted) when the queue is full. Never waits.
    pub fn offline_message(&self, user: &str, msg: &Message) {
        let i = &self.inner;
        let json = match serde_json::to_string(msg) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "message does not serialize; push dropped");
                i.metrics.count("dropped");
                return;
            }
        };
        let event = Event {
            id: format!("{}:{user}", msg.id),
            user: user.to_owned(),
            msg: json,
            queued_at: Instant::now(),
        };
        let bytes = event.bytes();
        // Reserve room first, so concurrent sends cannot overshoot.
        let count = i.pending.fetch_add(1, Ordering::AcqRel) + 1;
        let total = i.pending_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if count > i.settings.max_queue
            || total > i.settings.max_queue_bytes
            || i.tx.try_send(event).is_err()
        {
            i.release(bytes);
            i.metrics.count("dropped");
            tracing::warn!(user, "push queue full; push dropped");
            return;
        }
        i.metrics.queued.inc();
    }
}

impl Inner {
    fn release(&self, bytes: usize) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Takes queued events and delivers each in a task of its own, at most
/// `concurrency` at once.
async fn dispatch(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<Event>) {
    let permits = match inner.upgrade() {
        Some(i) => Arc::new(Semaphore::new(i.settings.concurrency.max(1))),
        None => return,
    };
    while let Some(event) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(i) = inner.upgrade() else { return };
        tokio::spawn(async move {
            let bytes = event.bytes();
            deliver(&i, event).await;
            i.release(bytes);
            i.metrics.queued.dec();
            drop(permit);
        });
    }
}

/// The event's body: fixed at the first attempt, so every retry carries
/// the same bytes and signature.
async fn body(i: &Inner, e: &Event) -> String {
    let unread = tokio::time::timeout(UNREAD_TIMEOUT, i.store.unread(&e.user))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|counts| counts.values().sum::<u64>());
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let unread = unread.map_or_else(|| "null".to_owned(), |n| n.to_string());
    format!(
        r#"{{"id":{},"type":"offline_message","user":{},"msg":{},"unread":{unread}}}"#,
        quote(&e.id),
        quote(&e.user),
        e.msg
    )
}

/// Hex HMAC-SHA256 of `body` under `key`, as the signature header says it.
pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac::sign(key, body).as_ref()))
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Accepted,
    Retry(String),
    Refused(u16),
}

/// Whether a status is worth retrying: server errors, timeouts, throttling.
fn classify(status: u16) -> Attempt {
    match status {
        200..=299 => Attempt::Accepted,
        408 | 429 => Attempt::Retry(format!("status {status}")),
        400..=499 => Attempt::Refused(status),
        _ => Attempt::Retry(format!("status {status}")),
    }
}

/// The delay before retry number `n` (1-based).
fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

async fn deliver(i: &Inner, e: Event) {
    let body = body(i, &e).await;
    let sig = signature(&i.key, body.as_bytes());
    let deadline = e.queued_at + i.settings.retry_for;
    let mut attempt = 1u32;
    loop {
        let outcome =
            match tokio::time::timeout(i.settings.timeout, post(i, &e.id, attempt, &sig, &body))
                .await
            {
                Ok(Ok(status)) => classify(status),
                Ok(Err(why)) => Attempt::Retry(why),
                Err(_) => Attempt::Retry("timed out".into()),
            };
        match outcome {
            Attempt::Accepted => {
                i.metrics.count("sent");
                return;
            }
            Attempt::Refused(status) => {
                i.metrics.count("failed");
                tracing::warn!(event = %e.id, status, "push webhook refused the event; not retried");
                return;
            }
            Attempt::Retry(why) => {
                let wait = backoff(attempt);
                if Instant::now() + wait > deadline {
                    i.metrics.count("failed");
                    tracing::warn!(event = %e.id, attempts = attempt, reason = %why, "push webhook gave up");
                    return;
                }
                i.metrics.count("retried");
                tracing::debug!(event = %e.id, attempt, reason = %why, "push webhook attempt failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// One POST on a fresh connection; the response status.
async fn post(i: &Inner, id: &str, attempt: u32, sig: &str, body: &str) -> Result<u16, String> {
    let host = i.uri.host().unwrap_or_default();
    let port = i.uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let authority = i.uri.authority().map_or(host, |a| a.as_str());
    let path = i.uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "parley-chat-node")
        .header(SIGNATURE_HEADER, sig)
        .header(EVENT_HEADER, id)
        .header(ATTEMPT_HEADER, attempt)
        .body(body.to_owned())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await;
    conn.abort();
    resp.map(|r| r.status().as_u16())
        .map_err(|e| format!("request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        assert!(check_url("http://push.example:8080/hook?x=1").is_ok());
        assert!(check_url("https://push.example/hook").is_err());
        assert!(check_url("push.example/hook").is_err());
        assert!(check_url("http:///hook").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn server_errors_and_throttling_are_retried_other_refusals_are_not() {
        assert_eq!(classify(200), Attempt::Accepted);
        assert_eq!(classify(204), Attempt::Accepted);
        assert!(matches!(classify(500), Attempt::Retry(_)));
        assert!(matches!(classify(503), Attempt::Retry(_)));
        assert!(matches!(classify(429), Attempt::Retry(_)));
        assert!(matches!(classify(408), Attempt::Retry(_)));
        assert_eq!(classify(400), Attempt::Refused(400));
        assert_eq!(classify(404), Attempt::Refused(404));
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn signature_is_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
