//! A small HTTP/1.1 client with a reqwest-like face, for the tests: one
//! connection per request, plain HTTP only.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// A status code that compares with integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub fn as_u16(self) -> u16 {
        self.0
    }
}

impl PartialEq<u16> for Status {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

/// A response, read whole.
pub struct Resp {
    status: Status,
    body: Bytes,
}

impl Resp {
    pub fn status(&self) -> Status {
        self.status
    }
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }
    pub async fn text(self) -> Result<String, String> {
        String::from_utf8(self.body.to_vec()).map_err(|e| e.to_string())
    }
}

/// Builds requests.
#[derive(Debug, Clone, Default)]
pub struct Http;

impl Http {
    pub fn new() -> Http {
        Http
    }
    pub fn get(&self, url: impl Into<String>) -> Req {
        Req::new("GET", url)
    }
    pub fn post(&self, url: impl Into<String>) -> Req {
        Req::new("POST", url)
    }
    pub fn delete(&self, url: impl Into<String>) -> Req {
        Req::new("DELETE", url)
    }
}

/// `GET url`.
pub async fn get(url: impl Into<String>) -> Result<Resp, String> {
    Req::new("GET", url).send().await
}

/// One request being built.
pub struct Req {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn new(method: &'static str, url: impl Into<String>) -> Req {
        Req {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn bearer_auth(mut self, token: &str) -> Req {
        self.headers
            .push(("authorization".into(), format!("Bearer {token}")));
        self
    }
    pub fn json(mut self, v: &serde_json::Value) -> Req {
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self.body = v.to_string().into_bytes();
        self
    }
    pub fn body(mut self, b: impl Into<String>) -> Req {
        self.body = b.into().into_bytes();
        self
    }
    pub async fn send(self) -> Result<Resp, String> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let what = format!("{} {}", self.method, self.url);
        super::within(
            what,
            super::STEP,
            request(self.method, &self.url, &headers, self.body),
        )
        .await
    }
}

/// Sends one request to `url` (`http://host:port/path`) and reads the whole
/// response.
async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Resp, String> {
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
    let mut req = hyper::Request::builder()
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
    let status = Status(resp.status().as_u16());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Resp { status, body })
}
