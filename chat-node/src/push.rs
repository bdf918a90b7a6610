//! The offline push webhook (DESIGN.md, "Offline push"): a message stored
//! for a user with no live session anywhere is handed to the application's
//! `CHAT_PUSH_WEBHOOK_URL`, which sends the push notification.
//!
//! The send's own atomic step writes a push feed entry for each such
//! receiver (presence is read in that step), so a send never waits for the
//! webhook and no acknowledged message can miss its push, whatever crashes:
//! with Redis the feed is the stream `chat:C:push`, read by every node's
//! pusher in one consumer group; an entry leaves it only once delivered or
//! given up, and one left by a node that died is claimed by another after
//! `CHAT_PUSH_CLAIM_S` (store/redis/push.rs). The in-memory store keeps
//! the feed in memory. The feed is bounded (`CHAT_PUSH_QUEUE` entries; in
//! memory also `CHAT_PUSH_QUEUE_BYTES`): a push to a full feed is dropped
//! and counted, the message stored all the same.
//!
//! A pusher holds at most `concurrency` entries, POSTs each with a deadline
//! and retries it with exponential backoff until it is accepted (2xx),
//! refused for good (4xx but 408 and 429), or `retry_for` has passed since
//! it was written. Each event keeps its id (`<message id>:<user>`) on every
//! attempt and every node, so the receiver dedupes by `id`: delivery is at
//! least once. `https://` receivers are checked against the Mozilla root
//! certificates (webpki-roots), or against `CHAT_PUSH_WEBHOOK_CA`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::protocol::Message;
use crate::shutdown::Listener;
use crate::store::{PushEntry, PushFeed, Store};

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
    /// An `http://` or `https://` URL with a host.
    pub url: String,
    /// HMAC-SHA256 key of the `X-Parley-Signature` header.
    pub secret: String,
    /// PEM file of the certificate authorities an `https` receiver is
    /// checked against, instead of the Mozilla roots.
    pub ca_file: Option<String>,
    /// How long an event is retried after it was queued.
    pub retry_for: Duration,
    /// Deadline of one attempt (connect, TLS, request, response head).
    pub timeout: Duration,
    /// Most entries the push feed holds (waiting or in hand).
    pub max_queue: usize,
    /// Most bytes of the in-memory store's push feed.
    pub max_queue_bytes: usize,
    /// Most attempts in flight at once on this node.
    pub concurrency: usize,
    /// An entry another pusher has held this long without a sign of life
    /// is taken over (its node died).
    pub claim_after: Duration,
}

impl std::fmt::Debug for PushSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("PushSettings")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("retry_for", &self.retry_for)
            .field("timeout", &self.timeout)
            .field("max_queue", &self.max_queue)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("concurrency", &self.concurrency)
            .field("claim_after", &self.claim_after)
            .finish_non_exhaustive()
    }
}

/// Checks a webhook URL: `http` or `https`, with a host.
pub fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL ({e}): {url}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "the webhook URL must be http:// or https:// (got {url})"
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
    /// Events `sent` (accepted), attempts `retried`, events `dropped` (feed
    /// full), `failed` (refused for good or out of retry time) and
    /// `skipped` (the message was recalled before its push went out).
    pub results: Family<ResultLabel, Counter>,
    /// Entries in the push feed, waiting or in hand (with Redis, the
    /// cluster's feed: every node shows the same).
    pub queued: Gauge,
}

/// Every `result` of `chat_push_webhook_total` (each starts at zero).
pub const RESULTS: [&str; 5] = ["sent", "retried", "dropped", "failed", "skipped"];

impl PushMetrics {
    fn count(&self, result: &'static str) {
        self.count_n(result, 1);
    }

    fn count_n(&self, result: &'static str, n: u64) {
        self.results
            .get_or_create(&ResultLabel { result })
            .inc_by(n);
    }

    /// Counts pushes the full feed refused.
    pub fn dropped(&self, n: u64) {
        if n > 0 {
            self.count_n("dropped", n);
        }
    }
}

/// Where the POSTs go: host, port, path, and TLS for `https`.
struct Target {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Target {
    fn new(settings: &PushSettings) -> Result<Target, String> {
        let uri = check_url(&settings.url)?;
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("not a TLS server name ({e}): {host}"))?;
            Some((
                tokio_rustls::TlsConnector::from(Arc::new(tls_config(settings)?)),
                name,
            ))
        } else {
            if settings.ca_file.is_some() {
                return Err("a webhook CA is set but the URL is not https://".into());
            }
            None
        };
        Ok(Target {
            uri,
            host,
            port,
            tls,
        })
    }

    /// One POST on a fresh connection; the response status.
    async fn post(&self, id: &str, attempt: u32, sig: &str, body: &str) -> Result<u16, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &self.tls {
            None => self.exchange(tcp, id, attempt, sig, body).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                self.exchange(tls, id, attempt, sig, body).await
            }
        }
    }

    async fn exchange<S>(
        &self,
        stream: S,
        id: &str,
        attempt: u32,
        sig: &str,
        body: &str,
    ) -> Result<u16, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let authority = self
            .uri
            .authority()
            .map_or(self.host.as_str(), |a| a.as_str());
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
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
}

/// The TLS client settings: the Mozilla roots, or the CAs of `ca_file`.
fn tls_config(settings: &PushSettings) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read the webhook CA file {path}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the webhook CA file {path} is not PEM: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("the webhook CA file {path} holds no certificate"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What the pusher holds.
struct Inner {
    settings: PushSettings,
    target: Target,
    key: hmac::Key,
    metrics: PushMetrics,
    store: Arc<dyn Store>,
    feed: Arc<dyn PushFeed>,
}

/// The node's pusher: takes entries from the push feed and delivers each.
pub struct Pusher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("url", &self.inner.settings.url)
            .finish()
    }
}

/// How often the backlog gauge is read.
const TICK: Duration = Duration::from_secs(1);

impl Pusher {
    /// A pusher for `feed`; `store` answers the unread counts.
    pub fn new(
        settings: PushSettings,
        feed: Arc<dyn PushFeed>,
        store: Arc<dyn Store>,
        metrics: PushMetrics,
    ) -> Result<Pusher, String> {
        let target = Target::new(&settings)?;
        Ok(Pusher {
            inner: Arc::new(Inner {
                key: hmac::Key::new(hmac::HMAC_SHA256, settings.secret.as_bytes()),
                target,
                settings,
                metrics,
                store,
                feed,
            }),
        })
    }

    /// Delivers until `stop`: at most `concurrency` entries in hand, each
    /// in a task of its own. On `stop` the deliveries under way get one
    /// attempt's deadline to end; what is left stays in the feed (Redis:
    /// pending, for another node's pusher to claim).
    pub async fn run(self, mut stop: Listener) {
        let i = self.inner;
        let permits = Arc::new(Semaphore::new(i.settings.concurrency.max(1)));
        let tasks = TaskTracker::new();
        let mut last_claim = Instant::now();
        let mut last_tick = Instant::now() - TICK;
        let mut backoff = Duration::from_millis(100);
        while !stop.is_set() {
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                if let Ok(n) = i.feed.backlog().await {
                    i.metrics.queued.set(n as i64);
                }
            }
            let free = permits.available_permits();
            if free == 0 {
                // Every permit in hand: wait for one, reading the backlog
                // on the way.
                tokio::select! {
                    p = permits.acquire() => drop(p),
                    _ = tokio::time::sleep(TICK) => {}
                    _ = stop.wait() => break,
                }
                continue;
            }
            let claim = last_claim.elapsed() >= i.settings.claim_after / 2;
            if claim {
                last_claim = Instant::now();
            }
            let taken = tokio::select! {
                r = i.feed.take(free, claim) => r,
                _ = stop.wait() => break,
            };
            match taken {
                Ok(entries) => {
                    backoff = Duration::from_millis(100);
                    for e in entries {
                        // Only this loop takes permits: `free` are there.
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            break;
                        };
                        let i = i.clone();
                        tasks.spawn(async move {
                            deliver(&i, e).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pusher: cannot read the push feed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tasks.close();
        if tokio::time::timeout(i.settings.timeout, tasks.wait())
            .await
            .is_err()
        {
            tracing::info!("pusher: stopped with deliveries under way; they stay in the feed");
        }
    }
}

/// The event's body: fixed at the first attempt on this node, so every
/// retry carries the same bytes and signature.
async fn body(i: &Inner, id: &str, user: &str, msg: &Message) -> Result<String, String> {
    let unread = tokio::time::timeout(UNREAD_TIMEOUT, i.store.unread(user))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|counts| counts.values().sum::<u64>());
    let msg = serde_json::to_string(msg).map_err(|e| e.to_string())?;
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let unread = unread.map_or_else(|| "null".to_owned(), |n| n.to_string());
    Ok(format!(
        r#"{{"id":{},"type":"offline_message","user":{},"msg":{msg},"unread":{unread}}}"#,
        quote(id),
        quote(user),
    ))
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

/// Delivers one entry: attempts with backoff until accepted, refused for
/// good, or `retry_for` after the entry was written; then it leaves the
/// feed. While waiting between attempts the entry is held, so no other
/// pusher claims it from a live one.
async fn deliver(i: &Inner, e: PushEntry) {
    let id = format!("{}:{}", e.msg_id, e.user);
    let result = match &e.msg {
        // Recalled, or gone from Redis: nothing to tell the user about.
        Some(m) if m.recalled != Some(true) => attempts(i, &e, &id, m).await,
        _ => {
            tracing::debug!(event = %id, "push skipped: the message was recalled or is gone");
            "skipped"
        }
    };
    i.metrics.count(result);
    // Until this succeeds the entry stays in the feed and is delivered again
    // (at least once); the receiver dedupes by `id`.
    for wait in [0, 200, 1000] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        match i.feed.done(&e.key).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(event = %id, error = %err, "push delivered but not yet marked done")
            }
        }
    }
}

/// The attempts of one event; the result it is counted under.
async fn attempts(i: &Inner, e: &PushEntry, id: &str, msg: &Message) -> &'static str {
    let body = match body(i, id, &e.user, msg).await {
        Ok(b) => b,
        Err(why) => {
            tracing::error!(event = %id, error = %why, "message does not serialize; push failed");
            return "failed";
        }
    };
    let sig = signature(&i.key, body.as_bytes());
    let deadline_ms = e.queued_ms + i.settings.retry_for.as_millis() as u64;
    let mut attempt = 1u32;
    loop {
        let outcome =
            match tokio::time::timeout(i.settings.timeout, i.target.post(id, attempt, &sig, &body))
                .await
            {
                Ok(Ok(status)) => classify(status),
                Ok(Err(why)) => Attempt::Retry(why),
                Err(_) => Attempt::Retry("timed out".into()),
            };
        match outcome {
            Attempt::Accepted => return "sent",
            Attempt::Refused(status) => {
                tracing::warn!(event = %id, status, "push webhook refused the event; not retried");
                return "failed";
            }
            Attempt::Retry(why) => {
                let wait = backoff(attempt);
                if crate::ids::now_ms() + wait.as_millis() as u64 > deadline_ms {
                    tracing::warn!(event = %id, attempts = attempt, reason = %why, "push webhook gave up");
                    return "failed";
                }
                i.metrics.count("retried");
                tracing::debug!(event = %id, attempt, reason = %why, "push webhook attempt failed; retrying");
                hold_while_waiting(i, &e.key, wait).await;
                attempt += 1;
            }
        }
    }
}

/// Sleeps `wait`, holding the entry at least every third of the claim
/// timeout so other pushers see it is in hand.
async fn hold_while_waiting(i: &Inner, key: &str, wait: Duration) {
    let step = (i.settings.claim_after / 3).max(Duration::from_millis(100));
    let end = Instant::now() + wait;
    loop {
        if let Err(e) = i.feed.hold(key).await {
            tracing::debug!(error = %e, "pusher: cannot hold an entry");
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(step)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_taken() {
        assert!(check_url("http://push.example:8080/hook?x=1").is_ok());
        assert!(check_url("https://push.example/hook").is_ok());
        assert!(check_url("ftp://push.example/hook").is_err());
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
