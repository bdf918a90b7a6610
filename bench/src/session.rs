//! One load-generator session: a real WebSocket client that connects with a
//! token, then a writer task sends what it is given and a reader task
//! records every frame it receives.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use chat_node::protocol::ErrorCode;
use chat_node::protocol::client::{Command, Request};
use chat_node::protocol::server::InboxEntry;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stats::Stats;

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
    pub sampled: std::collections::HashSet<String, foldhash::fast::RandomState>,
    /// The group scenario's groups: id -> their members among `sampled`.
    pub sampled_groups: std::collections::HashMap<String, Vec<String>>,
}

impl Shared {
    fn in_window(&self, t_us: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let start = self.window_start_us.load(Relaxed);
        let end = self.window_end_us.load(Relaxed);
        start > 0 && t_us >= start && (end == 0 || t_us < end)
    }

    /// Whether the measuring window had closed by `t_us`.
    fn window_closed_before(&self, t_us: u64) -> bool {
        let end = self
            .window_end_us
            .load(std::sync::atomic::Ordering::Relaxed);
        end > 0 && t_us >= end
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
    let connect = Request {
        rid: None,
        command: Command::Connect {
            token: token.to_owned(),
            device: device.to_owned(),
        },
    };
    ws.send(WsMessage::Text(encode(&connect).into()))
        .await
        .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(WsMessage::Text(t))) if Frame::read(&t).is_some_and(|f| f.kind == "connected") => {
            Ok(ws)
        }
        other => Err(format!("{address}: no connected: {other:?}")),
    }
}

/// Creates a group as the token's user over a connection of its own;
/// returns its id.
pub async fn create_group(
    address: &str,
    token: &str,
    name: &str,
    members: Vec<String>,
) -> Result<String, String> {
    let mut ws = connect(address, token, "bench-setup").await?;
    let create = Request {
        rid: None,
        command: Command::GroupCreate {
            name: name.to_owned(),
            members,
        },
    };
    ws.send(WsMessage::Text(encode(&create).into()))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(m) = ws.next().await {
        let Ok(WsMessage::Text(t)) = m else { continue };
        let v: serde_json::Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
        match v["type"].as_str() {
            Some("group") => {
                let _ = ws.close(None).await;
                return v["group"]["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("group without id: {t}"));
            }
            Some("error") => return Err(format!("{address}: group_create: {t}")),
            _ => {}
        }
    }
    Err(format!(
        "{address}: connection ended before the group was made"
    ))
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
            if sink.send(WsMessage::Text(frame.into())).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut end = "connection lost".to_owned();
        while let Some(m) = stream.next().await {
            match m {
                Ok(WsMessage::Text(t)) => record(&shared, &t),
                Ok(WsMessage::Close(frame)) => {
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

/// A client frame as JSON text.
pub fn encode(request: &Request) -> String {
    // A Request holds strings and integers only: serializing cannot fail.
    serde_json::to_string(request).unwrap_or_default()
}

/// A frame from the node, as far as the generator reads it. chat-node's
/// `ServerFrame` borrows its fields (it is built once and shared by every
/// session it goes to), so it serializes only; this is its reading side,
/// with the node's own types for everything a frame carries.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// On `synced`.
    #[serde(default)]
    pub entries: Vec<InboxEntry>,
    /// On `synced`.
    #[serde(default)]
    pub more: bool,
}

impl Frame<'_> {
    /// The frame in `text`; `None` if it does not read as one.
    pub fn read(text: &str) -> Option<Frame<'_>> {
        serde_json::from_str(text).ok()
    }
}

/// What the counters need of a live frame (`msg`, `sent`, `error`), borrowed
/// from its text: the readers' hot path. [`Frame`] reads the rest.
#[derive(Debug, Deserialize)]
struct Seen<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    msg: Option<SeenMessage<'a>>,
    #[serde(default)]
    code: Option<ErrorCode>,
}

/// The fields of a message the counters read.
#[derive(Debug, Deserialize)]
struct SeenMessage<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    from: Cow<'a, str>,
    #[serde(default, borrow)]
    to: Cow<'a, str>,
    #[serde(default, borrow)]
    group: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Cow<'a, str>,
}

impl SeenMessage<'_> {
    /// When the generator sent it (µs), from the body it wrote.
    fn sent_us(&self) -> Option<u64> {
        self.body.parse().ok()
    }
}

/// Accounts for one frame received.
fn record(shared: &Shared, text: &str) {
    let now = now_us();
    // Frames whose `msg` is a message id (`played`) do not read: none of
    // them is of interest here.
    let Ok(f) = serde_json::from_str::<Seen>(text) else {
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
                if shared.window_closed_before(now) {
                    st.delivered_after_window += 1;
                }
            }
        }
        ("sent", Some(m)) => {
            let in_window = m.sent_us().is_some_and(|t| shared.in_window(t));
            let mut st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            if in_window {
                st.acked_in_window += 1;
            }
            let members = m
                .group
                .as_deref()
                .and_then(|g| shared.sampled_groups.get(g));
            let users = [m.from.as_ref(), m.to.as_ref()]
                .into_iter()
                .chain(members.into_iter().flatten().map(String::as_str));
            for user in users {
                if shared.sampled.contains(user) {
                    st.inbox_expected
                        .entry(user.to_owned())
                        .or_default()
                        .insert(m.id.clone().into_owned());
                }
            }
            st.acked
                .insert(m.id.into_owned(), shared.expected_per_message);
        }
        ("error", _) => {
            // Every error frame carries a code (PROTOCOL.md, "Errors").
            let code = f.code.unwrap_or(ErrorCode::Internal);
            let mut st = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            *st.errors.entry(code).or_default() += 1;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_node::protocol::client::{Limits, parse};
    use chat_node::protocol::server::ServerFrame;
    use chat_node::protocol::{Kind, Message};

    fn message(body: &str) -> Message {
        Message {
            id: "01JD".into(),
            conv: "dm:u1:u2".into(),
            seq: 3,
            from: "u1".into(),
            to: "u2".into(),
            kind: Kind::Text,
            body: body.into(),
            media: None,
            ts: 1,
            played: None,
            group: None,
            system: None,
            recalled: None,
        }
    }

    #[test]
    fn frames_the_node_writes_read_back_whole() {
        let m = message("1763856000123456");
        let seen = |text: &str| {
            let f: Seen = serde_json::from_str(text).expect(text);
            let m = f.msg.map(|m| {
                let sent = m.sent_us();
                (
                    m.id.into_owned(),
                    m.from.into_owned(),
                    m.to.into_owned(),
                    sent,
                )
            });
            (f.kind.into_owned(), m, f.code)
        };
        let fields = Some((
            "01JD".into(),
            "u1".into(),
            "u2".into(),
            Some(1763856000123456),
        ));
        let msg = ServerFrame::Msg { pts: 9, msg: &m }.to_json();
        assert_eq!(seen(&msg), ("msg".into(), fields.clone(), None));

        let sent = ServerFrame::Sent {
            id: "c-1",
            msg: &m,
            rid: None,
        }
        .to_json();
        assert_eq!(seen(&sent), ("sent".into(), fields, None));

        let entries = [InboxEntry::message(4, m.clone())];
        let synced = ServerFrame::Synced {
            entries: &entries,
            more: true,
            pts: 4,
            trimmed_to: None,
            rid: None,
        }
        .to_json();
        let f = Frame::read(&synced).expect("synced");
        assert_eq!(f.kind, "synced");
        assert!(f.more);
        assert_eq!(
            f.entries
                .iter()
                .map(|e| (e.pts, e.msg.as_ref()))
                .collect::<Vec<_>>(),
            [(4, Some(&m))]
        );

        let error = ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: "slow down",
            rid: None,
            id: Some("c-2"),
        }
        .to_json();
        assert_eq!(
            seen(&error),
            ("error".into(), None, Some(ErrorCode::RateLimited))
        );

        let connected = ServerFrame::Connected {
            user: "u1",
            session: "s-1",
            node: "chat-0",
            pts: 0,
            heartbeat_s: 30,
            rid: None,
        }
        .to_json();
        assert_eq!(
            Frame::read(&connected).expect("connected").kind,
            "connected"
        );
    }

    #[test]
    fn deliveries_after_the_window_closed_are_counted_late() {
        let sent = now_us() - 1_000;
        let shared = Shared {
            stats: Mutex::new(Stats::default()),
            window_start_us: (sent - 1).into(),
            window_end_us: 0.into(),
            expected_per_message: 1,
            sampled: Default::default(),
            sampled_groups: Default::default(),
        };
        let m = message(&sent.to_string());
        let frame = ServerFrame::Msg { pts: 1, msg: &m }.to_json();
        record(&shared, &frame);
        // The window closes a microsecond after the send: the same frame
        // received now arrived after it.
        shared
            .window_end_us
            .store(sent + 1, std::sync::atomic::Ordering::Relaxed);
        record(&shared, &frame);
        let st = shared.stats.lock().expect("stats");
        assert_eq!((st.delivered_in_window, st.delivered_after_window), (2, 1));
    }

    #[test]
    fn frames_the_generator_writes_are_what_the_node_parses() {
        let limits = Limits {
            max_body_bytes: 4096,
            max_group_members: 500,
        };
        for command in [
            Command::Connect {
                token: "bench.abc".into(),
                device: "bench".into(),
            },
            Command::Sync {
                after: 17,
                limit: 1000,
            },
        ] {
            let request = Request { rid: None, command };
            assert_eq!(parse(&encode(&request), &limits), Ok(request));
        }
    }
}
