//! A reqwest-like face on the library's small HTTP client, for the tests.

use bytes::Bytes;
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
        let r =
            chat_node::http_client::request(self.method, &self.url, &headers, self.body).await?;
        Ok(Resp {
            status: Status(r.status),
            body: r.body,
        })
    }
}
