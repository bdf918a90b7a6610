//! `spec.archive` through reconcile, against the API double and the real
//! Redis and RabbitMQ: the archive reaches the nodes, specs the nodes could
//! not use are refused, and the archive consumers of gone runs are
//! collected, or reported in `status.pendingCleanup` while they hold entries.

use k8s_openapi::api::apps::v1::StatefulSet;
use parley_cluster::Keys;
use parley_cluster::archive::{GROUP, consumer_name};
use parley_operator::crd::{Archive, BackendRef, ChatCluster, SecretKeyRef};

mod fixtures;
mod support;

use fixtures::*;

/// `cc` with an archive whose URL is in Secret `archive`, key `url`.
fn with_archive_secret(mut cc: ChatCluster) -> ChatCluster {
    cc.spec.archive = Some(Archive {
        database: BackendRef {
            url: None,
            url_secret_ref: Some(SecretKeyRef {
                name: "archive".into(),
                key: "url".into(),
            }),
        },
        hot_messages: Some(50),
        ..Archive::default()
    });
    cc
}

#[tokio::test]
async fn an_archive_in_a_secret_reaches_the_nodes() {
    let url = b"mysql://chat:pw@mariadb:3306/chat";
    let client = client_with_secrets(
        vec![with_archive_secret(chat("chat", 2))],
        vec![secret("archive", "url", url)],
    )
    .await;
    run(&client, "chat").await;
    let stss: Vec<StatefulSet> = list(&client).await;
    let env = env_of(&stss[0]);
    assert_eq!(env["CHAT_ARCHIVE_URL"], "secret:archive/url");
    assert_eq!(env["CHAT_HOT_MESSAGES"], "50");
    assert!(!env.contains_key("CHAT_HOT_SECONDS"), "{env:?}");
    let cc = get_cc(&client, "chat").await;
    assert_eq!(cond(&cc, "Degraded").0, "False");
}

#[tokio::test]
async fn an_sqlite_missing_or_padded_archive_secret_is_refused() {
    let cc = with_archive_secret(chat("chat", 1));
    let sqlite = secret("archive", "url", b"sqlite:///var/lib/chat.db");
    let (reason, message) = refused(vec![cc.clone()], vec![sqlite], "chat").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("sqlite://") && message.contains("Secret archive"),
        "{message}"
    );
    let (reason, message) = refused(vec![cc.clone()], vec![], "chat").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("not found"), "{message}");
    let newline = secret("archive", "url", b"postgres://db/chat\n");
    let (_, message) = refused(vec![cc], vec![newline], "chat").await;
    assert!(message.contains("whitespace"), "{message}");
}

#[tokio::test]
async fn an_inline_sqlite_archive_is_refused() {
    let mut cc = chat("chat", 1);
    cc.spec.archive = Some(Archive {
        database: BackendRef {
            url: Some("sqlite:///data/chat.db".into()),
            url_secret_ref: None,
        },
        ..Archive::default()
    });
    let (reason, message) = refused(vec![cc], vec![], "chat").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("postgres://"), "{message}");
}

/// Runs `args` against the archive stream of `cluster` (key after the
/// subcommand for XGROUP, first otherwise).
fn on_stream(conn: &mut redis::Connection, cluster: &str, cmd: &str, args: &[&str]) {
    let stream = Keys::new(cluster).archive_stream();
    let mut c = redis::cmd(cmd);
    match cmd {
        "XGROUP" => c.arg(args[0]).arg(&stream).arg(&args[1..]),
        _ => c.arg(&stream).arg(args),
    };
    let _: redis::Value = c.query(conn).expect(cmd);
}

fn consumers_of(conn: &mut redis::Connection, cluster: &str) -> Vec<String> {
    let stream = Keys::new(cluster).archive_stream();
    let info: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg(GROUP)
        .query(conn)
        .expect("XINFO");
    let mut names: Vec<String> = info
        .iter()
        .filter_map(|c| redis::from_redis_value(c.get("name")?.clone()).ok())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_gone_runs_archive_consumer_with_entries_is_reported_until_claimed() {
    let cc = chat("chat", 1);
    let cluster = cc.cluster_id();
    let mut conn = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .expect("redis");
    // Pod 0 runs as uid-0; run uid-old of ordinal 0 died holding 2 entries.
    let (live, gone) = (consumer_name(8750, "uid-0"), consumer_name(8750, "uid-old"));
    on_stream(
        &mut conn,
        &cluster,
        "XGROUP",
        &["CREATE", GROUP, "$", "MKSTREAM"],
    );
    on_stream(
        &mut conn,
        &cluster,
        "XGROUP",
        &["CREATECONSUMER", GROUP, &live],
    );
    on_stream(&mut conn, &cluster, "XADD", &["*", "i", "m1"]);
    on_stream(&mut conn, &cluster, "XADD", &["*", "i", "m2"]);
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(&gone)
        .arg("STREAMS")
        .arg(Keys::new(&cluster).archive_stream())
        .arg(">")
        .query(&mut conn)
        .expect("XREADGROUP");

    let client = client_with(vec![cc], vec![pod("chat", 0, "uid-0", true)]).await;
    let ctx = ctx(&client);
    run_with(&client, "chat", &ctx).await;
    let pending = get_cc(&client, "chat")
        .await
        .status
        .unwrap()
        .pending_cleanup;
    assert_eq!(
        pending,
        vec![format!(
            "feed consumers {gone} (2 archive entries pending; live archivers claim them after the claim timeout)"
        )]
    );
    assert_eq!(
        consumers_of(&mut conn, &cluster),
        vec![live.clone(), gone.clone()]
    );

    // The live archiver claims the entries (its claim timeout passed): the
    // next reconcile removes the gone run's consumer, and only it.
    on_stream(&mut conn, &cluster, "XAUTOCLAIM", &[GROUP, &live, "0", "0"]);
    run_with(&client, "chat", &ctx).await;
    let status = get_cc(&client, "chat").await.status.unwrap();
    assert!(
        status.pending_cleanup.is_empty(),
        "{:?}",
        status.pending_cleanup
    );
    assert_eq!(consumers_of(&mut conn, &cluster), vec![live]);
    assert!(
        ctx.metrics
            .encode()
            .contains(r#"parley_operator_collected_total{kind="consumer"} 1"#),
        "{}",
        ctx.metrics.encode()
    );
    assert!(
        event_reasons(&client)
            .await
            .contains(&"Collected".to_owned())
    );
    let _: () = redis::cmd("DEL")
        .arg(Keys::new(&cluster).archive_stream())
        .query(&mut conn)
        .expect("DEL");
}
