//! The readiness probe's HTTP GET, spoken over a bare TCP stream: a
//! status from 200 to 399 within the timeout is success, as in a kubelet.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The port an `httpGet` names, a number or one of the container's named ports.
pub fn port(c: &Container, get: &HTTPGetAction) -> Option<u16> {
    match &get.port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

pub async fn http_get(ip: IpAddr, port: u16, path: &str, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, get(ip, port, path))
        .await
        .is_ok_and(|r| r.is_ok_and(|code| (200..400).contains(&code)))
}

async fn get(ip: IpAddr, port: u16, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect((ip, port)).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: parley-test-kubelet\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        let read = s.read(&mut head[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
    }
    status_code(&head[..n]).ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

/// `HTTP/1.1 200 OK` -> 200.
fn status_code(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_code() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH"), None);
    }
}
