//! A small chat client for the tests that reach nodes over the network
//! (the end-to-end suite, the image test): a bare HTTP request and a
//! WebSocket session speaking the client protocol.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A bare HTTP request; the status and JSON body (`None`: no answer).
pub async fn http(
    at: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let (status, text) = http_text(at, method, path, bearer, body).await?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A bare HTTP/1.0 request (so no server answers chunked: Prometheus does
/// to HTTP/1.1 past 2 KiB); the status and body text (`None`: no answer
/// in 5 s).
pub async fn http_text(
    at: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = TcpStream::connect(at).await.ok()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = bearer
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nhost: {at}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out);
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// A chat session.
pub struct Chat {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub pts: u64,
}

impl Chat {
    pub async fn connect(at: SocketAddr, user: &str, token: &str) -> Chat {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(format!("ws://{at}/ws")),
        )
        .await
        .unwrap_or_else(|_| panic!("{user}: handshake with {at} timed out"))
        .unwrap_or_else(|e| panic!("{user}: handshake with {at}: {e}"));
        let mut c = Chat { ws, pts: 0 };
        c.send(json!({"type": "connect", "token": token, "device": "e2e"}))
            .await
            .expect("connect sent");
        let r = c.recv().await.expect("connected");
        assert_eq!(r["type"], "connected", "{user} on {at}: {r}");
        c.pts = r["pts"].as_u64().expect("pts");
        c
    }

    pub async fn send(&mut self, v: Value) -> Option<()> {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.ws.send(Message::Text(v.to_string().into())),
        )
        .await
        .ok()?
        .ok()
    }

    /// The next text frame; `None` once the connection is closed or nothing
    /// came within 10 s.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                _ => return None,
            }
        }
    }

    pub async fn request(&mut self, v: Value) -> Option<Value> {
        self.send(v).await?;
        self.recv().await
    }

    /// Every inbox entry after `after`, following `more`.
    pub async fn sync_all(&mut self, after: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let r = self
                .request(json!({"type": "sync", "after": after, "limit": 500}))
                .await
                .expect("sync answered");
            assert_eq!(r["type"], "synced", "{r}");
            let entries = r["entries"].as_array().expect("entries").clone();
            if let Some(last) = entries.last() {
                after = last["pts"].as_u64().expect("pts");
            }
            out.extend(entries);
            if r["more"] != true {
                return out;
            }
        }
    }
}
