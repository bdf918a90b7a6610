//! One load-generator session: a real WebSocket client that connects with a
//! token, then a writer task sends what it is given and a reader task
//! records every frame it receives.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
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
}

impl Shared {
    fn in_window(&self, t_us: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let start = self.window_start_us.load(Relaxed);
        let end = self.window_end_us.load(Relaxed);
        start > 0 && t_us >= start && (end == 0 || t_us < end)
    }
}

/// Opens a session; returns the sender of frames to write.
pub async fn open(
    address: &str,
    token: &str,
    shared: Arc<Shared>,
) -> Result<mpsc::Sender<String>, String> {
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
    let connect = json!({"type": "connect", "token": token, "device": "bench"}).to_string();
    ws.send(Message::Text(connect.into()))
        .await
        .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"connected\"") => {}
        other => return Err(format!("{address}: no connected: {other:?}")),
    }
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

/// Accounts for one frame received.
fn record(shared: &Shared, text: &str) {
    let now = now_us();
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let mut st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
    match v["type"].as_str() {
        Some("msg") => {
            let id = v["msg"]["id"].as_str().unwrap_or_default().to_owned();
            *st.deliveries.entry(id).or_default() += 1;
            if let Some(sent) = v["msg"]["body"]
                .as_str()
                .and_then(|b| b.parse::<u64>().ok())
                && shared.in_window(sent)
            {
                st.latencies_us.push(now.saturating_sub(sent));
                st.delivered_in_window += 1;
            }
        }
        Some("sent") => {
            let id = v["msg"]["id"].as_str().unwrap_or_default().to_owned();
            if let Some(sent) = v["msg"]["body"]
                .as_str()
                .and_then(|b| b.parse::<u64>().ok())
                && shared.in_window(sent)
            {
                st.acked_in_window += 1;
            }
            st.acked.insert(id, shared.expected_per_message);
        }
        Some("error") => {
            let code = v["code"].as_str().unwrap_or("unknown").to_owned();
            *st.errors.entry(code).or_default() += 1;
        }
        _ => {}
    }
}
