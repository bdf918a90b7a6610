//! The operator binary against the in-memory Kubernetes API, served over
//! HTTP on 127.0.0.1 so the real binary can reach it through a kubeconfig:
//! it refuses to start without the CRD; it takes the lease, reconciles
//! (opening the cluster's backend connections to the real Redis and
//! RabbitMQ), and on SIGTERM exits within a few seconds, releasing the
//! lease, also while it waits for the lease.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::Api;
use kube_fake_client::ClientBuilder;
use parley_cluster::testing::free_port;
use parley_operator::crd::{BackendRef, ChatCluster, ChatClusterSpec};

mod support;

const NS: &str = "default";

fn kubeconfig(addr: std::net::SocketAddr) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "parley-shutdown-{}-{}.kubeconfig",
        std::process::id(),
        addr.port()
    ));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: fake, cluster: {{server: \"http://{addr}\"}}}}]\n\
         users: [{{name: fake, user: {{}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {NS}}}}}]\n\
         current-context: fake\n"
    );
    std::fs::write(&path, yaml).expect("write kubeconfig");
    path
}

/// A backend that accepts connections and never answers: a reconcile that
/// reaches it waits for its timeouts. Returns its port and a receiver that
/// yields once per accepted connection.
async fn silent_backend() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = tx.send(());
        }
    });
    (port, rx)
}

fn chat(name: &str, redis: String, amqp: String) -> ChatCluster {
    let mut cc = ChatCluster::new(
        name,
        ChatClusterSpec {
            replicas: 1,
            redis: BackendRef {
                url: Some(redis),
                url_secret_ref: None,
            },
            rabbitmq: BackendRef {
                url: Some(amqp),
                url_secret_ref: None,
            },
            cluster_id: Some(format!("binary-{name}-{:016x}", rand::random::<u64>())),
            ..ChatClusterSpec::default()
        },
    );
    cc.metadata.namespace = Some(NS.into());
    // With the finalizer in place the first reconcile does all its work:
    // the double serves no watch, so a reconcile that only added the
    // finalizer would not be followed by another.
    cc.metadata.finalizers = Some(vec![parley_operator::crd::FINALIZER.into()]);
    cc
}

/// Waits for `check` with a deadline; false if it never held.
async fn eventually(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_leader_within_seconds_and_releases_the_lease() {
    let redis =
        std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let amqp = std::env::var("CHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let (silent, mut reached) = silent_backend().await;
    let client = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_interceptor_funcs(support::api_server_json_patch())
        .with_resource::<Lease>()
        .with_resource::<CustomResourceDefinition>()
        .with_object(ChatCluster::crd())
        .with_object(chat("chat", redis, amqp))
        // A cluster whose backends hang: its reconcile is in flight when
        // the signal comes.
        .with_object(chat(
            "hung",
            format!("redis://127.0.0.1:{silent}/0"),
            format!("amqp://guest:guest@127.0.0.1:{silent}/%2f"),
        ))
        .build()
        .await
        .expect("fake client");
    let addr = support::serve(client.clone()).await;
    let config = kubeconfig(addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley-operator"))
        .env("KUBECONFIG", &config)
        .env("POD_NAME", "operator-under-test")
        .env("RUST_LOG", "warn")
        .args(["--http", "127.0.0.1:0", "--lease-namespace", NS])
        .stdout(Stdio::null())
        .spawn()
        .expect("operator starts");

    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = async || {
        leases
            .get_opt("parley-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let ccs: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    let led = eventually(Duration::from_secs(60), async || {
        holder().await.as_deref() == Some("operator-under-test")
            && ccs
                .get_opt("chat")
                .await
                .ok()
                .flatten()
                .is_some_and(|c| c.status.is_some())
    })
    .await;
    let in_flight = tokio::time::timeout(Duration::from_secs(30), reached.recv())
        .await
        .is_ok();
    if !led || !in_flight {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the operator never took the lease and reconciled (led: {led}, in flight: {in_flight})"
        );
    }

    let pid = child.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let exited = eventually(Duration::from_secs(5), async || {
        matches!(child.try_wait(), Ok(Some(_)))
    })
    .await;
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_file(&config);
    assert!(exited, "still running 5 s after SIGTERM");
    assert_eq!(holder().await, None, "the lease was released");
}

/// A standby (another replica holds the lease) handles SIGTERM itself and
/// exits cleanly. Outside a container an unhandled SIGTERM kills the
/// process; as PID 1 in a container it is ignored and the pod waits out
/// its grace period, so a death by signal here is the same defect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_standby_waiting_for_the_lease() {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let held = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("parley-operator".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("the-other-replica".into()),
            lease_duration_seconds: Some(3600),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    let client = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_resource::<Lease>()
        .with_resource::<CustomResourceDefinition>()
        .with_object(ChatCluster::crd())
        .with_object(held)
        .build()
        .await
        .expect("fake client");
    let addr = support::serve(client.clone()).await;
    let config = kubeconfig(addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley-operator"))
        .env("KUBECONFIG", &config)
        .env("POD_NAME", "standby-under-test")
        .env("RUST_LOG", "info")
        .args(["--http", "127.0.0.1:0", "--lease-namespace", NS])
        .stdout(Stdio::piped())
        .spawn()
        .expect("operator starts");
    // Waiting for the lease: it has said so on its log.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("waiting for the lease") {
                let _ = tx.send(());
            }
        }
    });
    let waiting = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    if !waiting {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the standby never started waiting for the lease");
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs")
            .success()
    );
    let mut status = None;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && status.is_none() {
        status = child.try_wait().ok().flatten();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(&config);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running 5 s after SIGTERM");
    };
    assert!(
        status.success(),
        "SIGTERM was not handled (in a container it would be ignored): {status:?}"
    );
}

/// Without the CRD the operator refuses to start and says how to install it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crd_the_operator_refuses_to_start_with_the_fix() {
    let client = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_resource::<CustomResourceDefinition>()
        .build()
        .await
        .expect("fake client");
    let addr = support::serve(client).await;
    let config = kubeconfig(addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley-operator"))
        .env("KUBECONFIG", &config)
        .env("RUST_LOG", "off")
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("operator starts");
    let mut status = None;
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until && status.is_none() {
        status = child.try_wait().ok().flatten();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(&config);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running without the CRD");
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.contains("kubectl apply -f crds/chatcluster.yaml"),
        "{stderr}"
    );
}

/// Starts the operator binary as `identity` against the double at `config`.
fn operator(config: &std::path::Path, identity: &str, http: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_parley-operator"))
        .env("KUBECONFIG", config)
        .env("POD_NAME", identity)
        .env("RUST_LOG", "warn")
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--lease-namespace",
            NS,
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("operator starts")
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0, whole body).
async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

/// Two replicas: one leads and reconciles (its metrics count it), the
/// other is ready and waits without taking the held lease. (The hand-over
/// after the leader stops is not checked here: the double's server-side
/// apply keeps the old holder's field ownership after it released the
/// lease, so the standby's apply conflicts, which a real API server does
/// not do. The end-to-end suite checks the hand-over on a real one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_reconciles_while_the_other_waits() {
    let redis =
        std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let amqp = std::env::var("CHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let client = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_interceptor_funcs(support::api_server_json_patch())
        .with_resource::<Lease>()
        .with_resource::<CustomResourceDefinition>()
        .with_object(ChatCluster::crd())
        .with_object(chat("chat", redis, amqp))
        .build()
        .await
        .expect("fake client");
    let addr = support::serve(client.clone()).await;
    let config = kubeconfig(addr);
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = async || {
        leases
            .get_opt("parley-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let (http_a, http_b) = (free_port(), free_port());
    let mut a = operator(&config, "replica-a", http_a);
    let a_leads = eventually(Duration::from_secs(60), async || {
        holder().await.as_deref() == Some("replica-a")
    })
    .await;
    let mut b = operator(&config, "replica-b", http_b);
    // The leader reconciled: its metrics say so; the standby is ready too.
    let counted = eventually(Duration::from_secs(30), async || {
        http_get(http_a, "/metrics").await.is_some_and(|m| {
            m.lines().any(|l| {
                l.starts_with("parley_operator_reconciles_total ")
                    && l.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()) >= Some(1)
            })
        })
    })
    .await;
    let standby_ready = eventually(Duration::from_secs(30), async || {
        http_get(http_b, "/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
    })
    .await;
    let b_waits = holder().await.as_deref() == Some("replica-a");
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(&config);
    assert!(a_leads, "replica-a never took the lease");
    assert!(counted, "the leader's metrics count no reconcile");
    assert!(standby_ready, "the standby is not ready");
    assert!(b_waits, "the standby took a held lease");
}
