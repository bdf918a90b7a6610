//! A minimal HTTP/1.1 client for plain-HTTP calls to chat nodes: issuing
//! tokens and reading `/metrics`. One connection per request; no TLS.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// Sends one request to `url` (`http://host:port/path`).
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Response, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("{host}:{port}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Response { status, body })
}

/// A node's resident memory, from its `/metrics`; 0 when it cannot be read.
pub async fn node_rss(node: &str) -> u64 {
    let Ok(r) = request("GET", &format!("http://{node}/metrics"), &[], vec![]).await else {
        return 0;
    };
    let text = String::from_utf8_lossy(&r.body);
    text.lines()
        .find_map(|l| l.strip_prefix("chat_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Issues a token for `user` with the nodes' admin token.
pub async fn issue_token(node: &str, admin: &str, user: &str) -> Result<String, String> {
    let body = serde_json::json!({"user": user, "platform": "bench"})
        .to_string()
        .into_bytes();
    let auth = format!("Bearer {admin}");
    let r = request(
        "POST",
        &format!("http://{node}/v1/tokens"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await?;
    if r.status != 201 {
        return Err(format!("token for {user}: HTTP {}", r.status));
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no token".into())
}
