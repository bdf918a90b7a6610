//! One load-generator session: a real WebSocket client that connects with a
//! token, then a writer task sends what it is given and a reader task
//! records every frame it receives.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::report::Stats;

/// Microseconds since the Unix epoch (shared clock of all processes here).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What a reader needs to know about the run.
pub struct Shared {
    pub stats: Mutex<Stats>,
    /// Start of the measuring window (µs); earlier sends are warm-up.
    pub window_start_us: std::sync::atomic::AtomicU64,
    /// End of the measuring window (µs); 0 while it lasts.
    pub window_end_us: std::sync::atomic::AtomicU64,
    /// Deliveries each acknowledged message must get.
    pub expected_per_message: u32,
    /// Users whose inboxes the catch-up phase checks.
    pub sampled: std::collections::HashSet<String>,
}

impl Shared {
    fn in_window(&self, t_us: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let start = self.window_start_us.load(Relaxed);
        let end = self.window_end_us.load(Relaxed);
        start > 0 && t_us >= start && (end == 0 || t_us < end)
    }
}

/// A client WebSocket to a node.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `address` and authenticates as `device`; returns once the
/// node answered `connected`.
pub async fn connect(address: &str, token: &str, device: &str) -> Result<Ws, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{address}/ws"),
        Some(config),
        true,
    )
    .await
    .map_err(|e| format!("{address}: {e}"))?;
    let connect = json!({"type": "connect", "token": token, "device": device}).to_string();
    ws.send(Message::Text(connect.into()))
        .await
        .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"connected\"") => Ok(ws),
        other => Err(format!("{address}: no connected: {other:?}")),
    }
}

/// Opens a session; returns the sender of frames to write.
pub async fn open(
    address: &str,
    token: &str,
    shared: Arc<Shared>,
) -> Result<mpsc::Sender<String>, String> {
    let ws = connect(address, token, "bench").await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut end = "connection lost".to_owned();
        while let Some(m) = stream.next().await {
            match m {
                Ok(Message::Text(t)) => record(&shared, &t),
                Ok(Message::Close(frame)) => {
                    end = frame
                        .map_or_else(|| "no code".to_owned(), |f| u16::from(f.code).to_string());
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The generator closes nothing itself before the report is made.
        let mut st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
        *st.closed.entry(end).or_default() += 1;
    });
    Ok(tx)
}

/// The parts of a server frame the generator looks at (borrowed: no
/// allocation per frame but the ids it keeps).
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    msg: Option<MsgRef<'a>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct MsgRef<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    from: Cow<'a, str>,
    #[serde(default, borrow)]
    to: Cow<'a, str>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
}

impl MsgRef<'_> {
    /// When the generator sent it (µs), from the body it wrote.
    fn sent_us(&self) -> Option<u64> {
        self.body.as_deref().and_then(|b| b.parse().ok())
    }
}

/// Accounts for one frame received.
fn record(shared: &Shared, text: &str) {
    let now = now_us();
    let Ok(f) = serde_json::from_str::<Frame>(text) else {
        return;
    };
    match (f.kind.as_ref(), f.msg) {
        ("msg", Some(m)) => {
            let in_window = m.sent_us().filter(|&t| shared.in_window(t));
            let mut st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            *st.deliveries.entry(m.id.into_owned()).or_default() += 1;
            if let Some(sent) = in_window {
                st.latencies_us.push(now.saturating_sub(sent));
                st.delivered_in_window += 1;
            }
        }
        ("sent", Some(m)) => {
            let in_window = m.sent_us().is_some_and(|t| shared.in_window(t));
            let mut st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            if in_window {
                st.acked_in_window += 1;
            }
            for user in [&m.from, &m.to] {
                if shared.sampled.contains(user.as_ref()) {
                    st.inbox_expected
                        .entry(user.to_string())
                        .or_default()
                        .insert(m.id.to_string());
                }
            }
            st.acked
                .insert(m.id.into_owned(), shared.expected_per_message);
        }
        ("error", _) => {
            let code = f.code.as_deref().unwrap_or("unknown").to_owned();
            let mut st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            *st.errors.entry(code).or_default() += 1;
        }
        _ => {}
    }
}
