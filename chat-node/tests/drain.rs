//! Draining a node without a reconnect storm: `reconnect` frames are paced
//! at `CHAT_DRAIN_RATE` over the grace and name where to go; nothing sent
//! meanwhile is lost.

mod common;

use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use serde_json::json;
use tokio::time::Instant;

/// Sessions on the draining node.
const SESSIONS: usize = 300;
/// Its drain rate: 300 sessions take three seconds to be told.
const RATE: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_sessions_at_the_drain_rate_and_names_the_other_nodes() {
    let mut cluster = Cluster::start_with_env(3, &common::cluster::amqp_url(), |i| {
        if i == 0 {
            vec![
                ("CHAT_DRAIN_RATE", RATE.to_string()),
                ("CHAT_DRAIN_GRACE_S", "20".to_owned()),
            ]
        } else {
            vec![]
        }
    })
    .await;
    let mut sessions = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        sessions.push(cluster.session(0, &format!("u{i}")).await);
    }
    let others = [1, 2].map(|i| format!("127.0.0.1:{}", cluster.ports[i]));

    cluster.signal(0, "-TERM");
    let started = Instant::now();
    // Every session waits for its own frame; record when it came.
    let waits: Vec<_> = sessions
        .into_iter()
        .map(|mut c: Client| {
            tokio::spawn(async move {
                // Each waits at most the harness's frame wait: all are told
                // within about three seconds.
                let frame = loop {
                    let f = c.recv().await;
                    if f["type"] == "reconnect" {
                        break f;
                    }
                };
                (Instant::now(), frame)
            })
        })
        .collect();
    let mut told = Vec::with_capacity(SESSIONS);
    for w in waits {
        told.push(w.await.unwrap());
    }
    told.sort_by_key(|(at, _)| *at);
    for (_, f) in &told {
        assert_eq!(f["reason"], "draining", "{f}");
        let address = f["address"].as_str().unwrap_or_default();
        assert!(others.iter().any(|o| o == address), "{f}");
    }
    // Both other nodes take a share (they started equal).
    for o in &others {
        let n = told
            .iter()
            .filter(|(_, f)| f["address"] == json!(o))
            .count();
        assert!(n >= SESSIONS / 3, "{o} got {n} of {SESSIONS}");
    }
    // Paced, not all at once: slots come no faster than the rate (a busy
    // machine can only make them later), so the last is told at least
    // (SESSIONS - 1) / RATE after the first slot, which is at the drain.
    let last = told.last().unwrap().0 - started;
    let floor = Duration::from_millis((SESSIONS as u64 - 1) * 1000 / RATE);
    assert!(
        last >= floor - Duration::from_millis(200),
        "all told within {last:?}"
    );
    // No one-second window holds a storm: at most the rate, with room for
    // slots a busy machine delayed into the next second (all at once, as
    // before pacing, would be three times the rate).
    let times: Vec<Instant> = told.iter().map(|(t, _)| *t).collect();
    let peak = times
        .iter()
        .map(|t| {
            times
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(peak as u64 <= 2 * RATE, "{peak} reconnects in one second");
    assert!(
        cluster.wait_exit(0, Duration::from_secs(30)).await,
        "drained node exits 0"
    );
}
