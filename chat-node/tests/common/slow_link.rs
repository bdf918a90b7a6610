//! A TCP relay between a node and a backend that can hold back the
//! backend's replies: the request reaches the real server and runs, but
//! its answer comes late, which is what a timeout after a write looks like
//! from the node. Real sockets both ways, nothing faked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A relay to one backend address.
pub struct SlowLink {
    pub addr: SocketAddr,
    hold: Arc<AtomicBool>,
}

impl SlowLink {
    /// Relays connections on a free loopback port to `backend`.
    pub async fn start(backend: SocketAddr) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = Arc::new(AtomicBool::new(false));
        let h = hold.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(backend).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while h.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowLink { addr, hold }
    }

    /// From now on, replies wait (requests still go through).
    pub fn hold_replies(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Lets the held replies and every later one through.
    pub fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }
}
