//! Stopping, designed in: a [`Signal`] is a one-way flag (not set -> set)
//! that any number of tasks wait on. The node's drain, the background
//! tasks' stop and the bus's stop are each one; every long-running loop
//! `select!`s on its [`Listener`]. [`os_signal`] resolves on SIGTERM or
//! Ctrl-C, which is what starts a drain.

use tokio::sync::watch;

/// A flag that is set once and then stays set.
#[derive(Debug)]
pub struct Signal(watch::Sender<bool>);

impl Default for Signal {
    fn default() -> Self {
        Signal(watch::Sender::new(false))
    }
}

impl Signal {
    /// Sets the flag; every listener wakes.
    pub fn set(&self) {
        self.0.send_replace(true);
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// A handle that can wait for the flag.
    pub fn listen(&self) -> Listener {
        Listener(self.0.subscribe())
    }
}

/// Waits for a [`Signal`].
#[derive(Debug, Clone)]
pub struct Listener(watch::Receiver<bool>);

impl Listener {
    /// Whether the flag is set now.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the flag is set (or its signal is gone). Holds no
    /// borrow of the flag across an await, so callers stay `Send`.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|set| *set).await;
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn os_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_wake_when_set_and_stay_woken() {
        let s = Signal::default();
        let mut before = s.listen();
        assert!(!s.is_set());
        let waiter = tokio::spawn(async move { before.wait().await });
        s.set();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        // A listener made after the flag was set does not wait.
        let mut after = s.listen();
        tokio::time::timeout(std::time::Duration::from_secs(5), after.wait())
            .await
            .expect("already set");
        assert!(s.is_set());
    }
}
