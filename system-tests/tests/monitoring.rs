//! The chart's monitoring against live programs:
//!
//! - every metric name the Grafana dashboard and the PrometheusRule use is
//!   exposed by a live chat-node and the operator's metrics endpoint, so a
//!   rename cannot silently blank a panel or mute an alert;
//! - a real Prometheus (the Debian binary) scraping a chat-node and the
//!   operator, with the chart's rules, fires the archive lag alert when the
//!   node's SQL archive is unreachable, and the operator-down alert when
//!   the operator's endpoint goes away. Ignored unless run by
//!   `scripts/check-monitoring.sh --live` (which renders the rules with
//!   short durations into `PARLEY_LIVE_RULES`).
//!
//! Needs the machine's Redis and RabbitMQ, like the other tests here.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parley_operator::metrics::Metrics;
use parley_system_tests::chat::{Chat, http_text};
use parley_system_tests::{Nodes, eventually, free_port, token};
use serde_json::{Value, json};

fn chart_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/parley-operator")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The metric names `text` (a dashboard, a rules template) uses: every
/// identifier starting `chat_` or `parley_operator_`.
fn names_used(text: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(['c', 'p']) {
        let rest = &text[i..];
        let starts = rest.starts_with("chat_") || rest.starts_with("parley_operator_");
        let boundary = text[..i].chars().next_back().is_none_or(|c| !ident(c));
        if starts && boundary {
            out.insert(rest.chars().take_while(|&c| ident(c)).collect());
        }
    }
    out
}

/// Every series name an exposition (`/metrics`) offers a query: from its
/// `# TYPE` lines (a family with no sample yet still counts) and samples.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut it = t.split_whitespace();
            let (Some(name), Some(ty)) = (it.next(), it.next()) else {
                continue;
            };
            let suffixes: &[&str] = match ty {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            };
            out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
            && !name.is_empty()
        {
            out.insert(name.to_owned());
        }
    }
    out
}

/// The body of a 200 answer to `GET path`.
async fn get(at: SocketAddr, path: &str) -> Option<String> {
    match http_text(at, "GET", path, None, None).await? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// The operator's /metrics endpoint (its real HTTP server and metrics) on
/// a free port; aborting the task takes it away.
async fn operator_endpoint() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let metrics = Metrics::default();
    // What a reconcile of one ChatCluster sets (the only family with a
    // series per ChatCluster rather than from the start).
    metrics.pending_cleanup("chat", "chat", 0);
    let task = tokio::spawn(async move {
        let _ = parley_operator::http::serve(addr, metrics, Arc::new(AtomicBool::new(true))).await;
    });
    let up = eventually(Duration::from_secs(10), async || {
        get(addr, "/metrics").await.is_some()
    })
    .await;
    assert!(up, "the operator's endpoint answers");
    (addr, task)
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_use_is_exposed() {
    let mut used = names_used(&chart_file("dashboards/parley.json"));
    used.extend(names_used(&chart_file("templates/prometheusrule.yaml")));
    // The extraction itself must see the panels: a broken one passes
    // vacuously.
    assert!(used.len() >= 20, "{used:?}");

    let mut nodes = Nodes::new();
    nodes.start(0, "run-a").await;
    let node: SocketAddr = ([127, 0, 0, 1], nodes.port(0)).into();
    let (operator, task) = operator_endpoint().await;
    let mut live = exposed(&get(node, "/metrics").await.expect("node /metrics"));
    live.extend(exposed(
        &get(operator, "/metrics").await.expect("operator /metrics"),
    ));
    task.abort();

    let missing: Vec<&String> = used.difference(&live).collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or the alerts but not exposed: {missing:?}"
    );
}

/// A Prometheus process with its own data directory, stopped on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(rules: &Path, node: SocketAddr, operator: SocketAddr) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("parley-prom-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        // Target labels as the PodMonitor and the ServiceMonitor give them
        // (the operator's job is its metrics Service, as the rules expect).
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules],
            "scrape_configs": [
                {"job_name": "chat-nodes", "static_configs": [{
                    "targets": [node.to_string()],
                    "labels": {"namespace": "chat", "chatcluster": "chat", "pod": "chat-0"}}]},
                {"job_name": "parley-parley-operator-metrics", "static_configs": [{
                    "targets": [operator.to_string()],
                    "labels": {"namespace": "parley-system"}}]},
            ],
        });
        // JSON is YAML.
        std::fs::write(dir.join("prometheus.yml"), config.to_string()).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (Debian package prometheus)");
        Prometheus { child, dir, addr }
    }

    /// The alerts as `/api/v1/alerts` lists them.
    async fn alerts(&self) -> Vec<Value> {
        let Some(body) = get(self.addr, "/api/v1/alerts").await else {
            return vec![];
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    async fn firing(&self, alert: &str) -> bool {
        self.alerts()
            .await
            .iter()
            .any(|a| a["labels"]["alertname"] == alert && a["state"] == "firing")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
#[ignore = "needs the prometheus binary and PARLEY_LIVE_RULES: scripts/check-monitoring.sh --live"]
async fn a_real_prometheus_fires_the_archive_lag_and_operator_down_alerts() {
    let rules = PathBuf::from(
        std::env::var("PARLEY_LIVE_RULES")
            .expect("PARLEY_LIVE_RULES: the chart's rules (scripts/check-monitoring.sh --live)"),
    );
    // The archive's SQL server is unreachable: nothing is archived.
    let dead = free_port();
    let mut nodes = Nodes::new();
    nodes
        .start_with(
            0,
            "run-a",
            &[(
                "CHAT_ARCHIVE_URL",
                format!("postgres://parley:parley@127.0.0.1:{dead}/none"),
            )],
        )
        .await;
    let node: SocketAddr = ([127, 0, 0, 1], nodes.port(0)).into();
    let (operator, task) = operator_endpoint().await;
    let prometheus = Prometheus::start(&rules, node, operator);

    // A stored message that cannot be archived: its age is the lag.
    let mut alice = Chat::connect(node, "alice", &token(node.port(), "alice").await).await;
    let r = alice
        .request(json!({"type": "send", "id": "c-1", "to": "bob", "kind": "text", "body": "hi"}))
        .await
        .expect("sent");
    assert_eq!(r["type"], "sent", "{r}");

    let fired = eventually(Duration::from_secs(90), async || {
        prometheus.firing("ChatArchiveLagGrowing").await
    })
    .await;
    assert!(
        fired,
        "ChatArchiveLagGrowing fired: {:?}",
        prometheus.alerts().await
    );
    // What is healthy does not alert.
    let alerts = prometheus.alerts().await;
    for healthy in ["ChatNodeNotReady", "ParleyOperatorDown"] {
        assert!(
            alerts.iter().all(|a| a["labels"]["alertname"] != healthy),
            "{healthy}: {alerts:?}"
        );
    }

    // The operator's endpoint goes away: the operator-down alert fires.
    task.abort();
    let fired = eventually(Duration::from_secs(60), async || {
        prometheus.firing("ParleyOperatorDown").await
    })
    .await;
    assert!(
        fired,
        "ParleyOperatorDown fired: {:?}",
        prometheus.alerts().await
    );
}
