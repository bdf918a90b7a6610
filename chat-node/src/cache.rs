//! A value read from a backend, kept for a short while, so unauthenticated
//! endpoints (`/v1/route`, `/v1/nodes`, `/readyz`) cost the backend one
//! read per interval however often they are asked; concurrent askers wait
//! for one refresh instead of each making their own.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A value and when it was read.
pub struct Cached<T> {
    ttl: Duration,
    slot: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Cached<T> {
    pub fn new(ttl: Duration) -> Self {
        Cached {
            ttl,
            slot: Mutex::new(None),
        }
    }

    /// The kept value while fresh, else a new one from `read` (kept only
    /// if it succeeded).
    pub async fn get<E, F>(&self, read: impl FnOnce() -> F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, v)) = slot.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(v.clone());
        }
        let v = read().await?;
        *slot = Some((Instant::now(), v.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_once_per_interval_and_not_after_a_failure() {
        let c = Cached::new(Duration::from_secs(1));
        let reads = AtomicU32::new(0);
        let read = || async { Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(c.get(read).await, Ok(0));
        assert_eq!(c.get(read).await, Ok(0));
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(c.get(read).await, Ok(1));
        // A failed read keeps nothing: the next one reads again.
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(c.get(|| async { Err::<u32, _>("down") }).await, Err("down"));
        assert_eq!(c.get(read).await, Ok(2));
    }
}
