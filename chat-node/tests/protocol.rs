//! The client protocol of PROTOCOL.md, end to end: real WebSocket clients
//! against a running node, once on the in-memory store and once on Redis.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Client, TestNode};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const QUIET: Duration = Duration::from_millis(300);

both_stores!(
    connect_returns_session_and_answers_pings,
    bad_tokens_and_early_frames_are_unauthorized,
    send_reaches_every_other_device_of_both_users_once,
    the_sender_is_always_the_session_user,
    a_retried_client_id_is_stored_and_delivered_once,
    offline_messages_sync_in_order_with_paging,
    history_pages_newest_first_listed_ascending,
    unread_counts_and_read_receipts,
    voice_played_receipts_follow_the_rules,
    messages_to_oneself_make_one_inbox_entry,
    revoking_a_token_kicks_its_sessions,
    bad_frames_get_errors_and_change_nothing,
    oversize_frames_close_1009_without_touching_others,
    rate_limit_refuses_then_closes_abusers,
);

async fn connect_returns_session_and_answers_pings(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let token = node.token("alice", "ios").await;
    assert!(token.starts_with("ios."));
    let mut c = Client::open(node.addr).await;
    let r = c
        .request(json!({"type":"connect","token":token,"device":"alice-iphone","rid":"r0"}))
        .await;
    assert_eq!(r["type"], "connected");
    assert_eq!(r["user"], "alice");
    assert_eq!(r["pts"], 0);
    assert_eq!(r["heartbeat_s"], 30);
    assert_eq!(r["rid"], "r0");
    assert!(r["session"].as_str().unwrap().starts_with("s-"));
    assert!(r["node"].as_str().unwrap().starts_with("chat-"));

    let pong = c.request(json!({"type":"ping","rid":"r1"})).await;
    assert_eq!(pong, json!({"type":"pong","rid":"r1"}));
    assert_eq!(
        c.request(json!({"type":"ping"})).await,
        json!({"type":"pong"})
    );

    // WebSocket-level pings are answered with pongs, and nothing else.
    c.send_raw(Message::Ping(b"hb".to_vec().into())).await;
    match tokio::time::timeout(common::WAIT, futures_util::StreamExt::next(&mut c.ws)).await {
        Ok(Some(Ok(Message::Pong(p)))) => assert_eq!(&p[..], b"hb"),
        other => panic!("no pong: {other:?}"),
    }
    c.expect_silence(QUIET).await;

    // Two sessions of one user have distinct ids.
    let other = node.session("alice").await;
    assert_ne!(other.connected["session"], r["session"]);
    node.stop().await;
}

async fn bad_tokens_and_early_frames_are_unauthorized(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;

    let mut c = Client::open(node.addr).await;
    c.send(json!({"type":"connect","token":"ios.nope","rid":"x"}))
        .await;
    let (frames, code) = c.closed().await;
    assert_eq!(frames[0]["code"], "unauthorized");
    assert_eq!(frames[0]["rid"], "x");
    assert_eq!(code, Some(4001));

    let mut c = Client::open(node.addr).await;
    c.send(json!({"type":"ping"})).await;
    let (frames, code) = c.closed().await;
    assert_eq!(frames[0]["code"], "unauthorized");
    assert_eq!(code, Some(4001));

    let mut c = Client::open(node.addr).await;
    c.send_raw(Message::Text("{not json".into())).await;
    let (frames, code) = c.closed().await;
    assert_eq!(frames[0]["code"], "unauthorized");
    assert_eq!(code, Some(4001));

    // An expired token is refused like an unknown one: see
    // `an_expired_token_is_refused_like_an_unknown_one`.
    node.stop().await;
}

/// Expiry over the wire: two tokens written straight into Redis the way
/// the node stores them (under their SHA-256), one valid, one whose expiry
/// has passed (written without Redis' own expiry, so only the node's check
/// can refuse it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_like_an_unknown_one() {
    use sha2::{Digest, Sha256};
    let node = TestNode::start(Backend::Redis, |_| {}).await;
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let now = chat_node::ids::now_ms();
    let mut put = |token: &str, user: &str, expires_at: u64| {
        let key = format!(
            "chat:{}:token:{}",
            node.cluster,
            hex::encode(Sha256::digest(token.as_bytes()))
        );
        let () = redis::cmd("HSET")
            .arg(&key)
            .arg("user")
            .arg(user)
            .arg("platform")
            .arg("web")
            .arg("expires_at")
            .arg(expires_at)
            .query(&mut conn)
            .unwrap();
    };
    let (valid, expired) = ("web.still-valid", "web.expired");
    put(valid, "alice", now + 60_000);
    put(expired, "bob", now - 1_000);

    let alice = Client::connect(node.addr, valid).await.expect_connected();
    assert_eq!(alice.user(), "alice");
    let mut c = Client::open(node.addr).await;
    c.send(json!({"type":"connect","token":expired,"rid":"e"}))
        .await;
    let (frames, code) = c.closed().await;
    assert_eq!(
        (frames[0]["code"].as_str(), frames[0]["rid"].as_str()),
        (Some("unauthorized"), Some("e")),
        "{frames:?}"
    );
    assert_eq!(code, Some(4001));
    node.stop().await;
}

async fn send_reaches_every_other_device_of_both_users_once(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut a1 = node.session("alice").await;
    let mut a2 = node.session("alice").await;
    let mut b1 = node.session("bob").await;
    let mut b2 = node.session("bob").await;

    let sent = a1
        .request(json!({"type":"send","id":"c-1","to":"bob","kind":"text","body":"hi","rid":"r1"}))
        .await;
    assert_eq!(sent["type"], "sent");
    assert_eq!(sent["id"], "c-1");
    assert_eq!(sent["rid"], "r1");
    let msg = &sent["msg"];
    assert_eq!(msg["conv"], "dm:alice:bob");
    assert_eq!(msg["seq"], 1);
    assert_eq!(msg["from"], "alice");
    assert_eq!(msg["to"], "bob");
    assert_eq!(msg["kind"], "text");
    assert_eq!(msg["body"], "hi");
    assert_eq!(msg["id"].as_str().unwrap().len(), 26);
    assert!(msg["ts"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(msg.get("played").is_none());

    for c in [&mut b1, &mut b2] {
        let f = c.recv().await;
        assert_eq!(f["type"], "msg");
        assert_eq!(f["pts"], 1);
        assert_eq!(&f["msg"], msg);
    }
    let f = a2.recv().await;
    assert_eq!(
        (f["type"].as_str(), f["pts"].as_u64()),
        (Some("msg"), Some(1))
    );
    assert_eq!(&f["msg"], msg);

    // Bob answers: numbered 2 in both inboxes, seq 2 in the conversation.
    let sent = b2.send_text("alice", "b-1", "hello").await;
    assert_eq!(sent["msg"]["seq"], 2);
    for c in [&mut a1, &mut a2, &mut b1] {
        let f = c.recv().await;
        assert_eq!(f["pts"], 2);
        assert_eq!(f["msg"]["seq"], 2);
    }
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        c.expect_silence(QUIET).await;
    }
    node.stop().await;
}

async fn the_sender_is_always_the_session_user(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut mallory = node.session("mallory").await;
    let mut bob = node.session("bob").await;
    let sent = mallory
        .request(json!({"type":"send","id":"x","to":"bob","from":"alice","kind":"text","body":"it's alice"}))
        .await;
    assert_eq!(sent["msg"]["from"], "mallory");
    assert_eq!(bob.recv().await["msg"]["from"], "mallory");
    // Alice's conversation with bob is untouched; mallory cannot read it.
    let mut alice = node.session("alice").await;
    let h = alice.request(json!({"type":"history","with":"bob"})).await;
    assert_eq!(h["messages"], json!([]));
    let h = mallory
        .request(json!({"type":"history","with":"bob"}))
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    assert_eq!(alice.sync_all(0).await.len(), 0);
    node.stop().await;
}

async fn a_retried_client_id_is_stored_and_delivered_once(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let first = alice.send_text("bob", "c-7", "once").await;
    let live = bob.recv().await;
    assert_eq!(live["msg"]["id"], first["msg"]["id"]);
    let again = alice.send_text("bob", "c-7", "once").await;
    assert_eq!(first["msg"], again["msg"]);
    // The retry is answered with the first message and delivered to nobody
    // (PROTOCOL.md: nobody receives it twice).
    bob.expect_silence(QUIET).await;
    // The same client id from another device of the same user is a retry
    // too: neither bob nor alice's first device gets it again.
    let mut alice2 = node.session("alice").await;
    let third = alice2.send_text("bob", "c-7", "once").await;
    assert_eq!(third["msg"], first["msg"]);
    bob.expect_silence(QUIET).await;
    alice.expect_silence(QUIET).await;
    assert_eq!(
        bob.sync_all(0).await.len(),
        1,
        "stored once, with one inbox entry"
    );
    // ...but from another user it is a new message.
    let other = bob.send_text("alice", "c-7", "mine").await;
    assert_ne!(other["msg"]["id"], first["msg"]["id"]);
    assert_eq!(other["msg"]["seq"], 2);
    assert_eq!(bob.sync_all(0).await.len(), 2);
    let unread = node
        .session("bob")
        .await
        .request(json!({"type":"unread"}))
        .await;
    assert_eq!(unread["counts"], json!({"alice": 1}));
    node.stop().await;
}

async fn offline_messages_sync_in_order_with_paging(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    for i in 1..=5 {
        alice
            .send_text("bob", &format!("c-{i}"), &format!("m{i}"))
            .await;
    }
    let mut bob = node.session("bob").await;
    assert_eq!(bob.pts(), 5);
    let r = bob
        .request(json!({"type":"sync","after":0,"limit":2,"rid":"s"}))
        .await;
    assert_eq!(r["type"], "synced");
    assert_eq!(r["rid"], "s");
    assert_eq!(r["more"], true);
    assert_eq!(r["pts"], 5);
    let e = r["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0]["pts"].as_u64(), e[0]["msg"]["body"].as_str()),
        (Some(1), Some("m1"))
    );
    assert_eq!(
        (e[1]["pts"].as_u64(), e[1]["msg"]["body"].as_str()),
        (Some(2), Some("m2"))
    );
    let r = bob
        .request(json!({"type":"sync","after":2,"limit":3}))
        .await;
    assert_eq!(r["more"], false);
    let bodies: Vec<_> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["msg"]["body"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("m3"), json!("m4"), json!("m5")]);
    let r = bob.request(json!({"type":"sync","after":5})).await;
    assert_eq!(
        (r["entries"].clone(), r["more"].clone(), r["pts"].clone()),
        (json!([]), json!(false), json!(5))
    );
    // Default: everything after 0.
    let r = bob.request(json!({"type":"sync"})).await;
    assert_eq!(r["entries"].as_array().unwrap().len(), 5);
    // The sender's inbox has them too, numbered in its own sequence.
    let mine = alice.sync_all(0).await;
    assert_eq!(
        mine.iter()
            .map(|e| e["pts"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    node.stop().await;
}

async fn history_pages_newest_first_listed_ascending(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    for i in 1..=5 {
        // One short-lived session per send, so no deliveries interleave.
        let (from, to) = if i % 2 == 0 {
            ("bob", "alice")
        } else {
            ("alice", "bob")
        };
        let mut c = node.session(from).await;
        c.send_text(to, &format!("h-{i}"), &format!("m{i}")).await;
    }
    let mut carol = node.session("carol").await;
    carol.send_text("alice", "x", "unrelated").await;
    let mut reader = node.session("alice").await;
    let h = reader
        .request(json!({"type":"history","with":"bob","limit":2,"rid":"h"}))
        .await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["with"], "bob");
    assert_eq!(h["rid"], "h");
    assert_eq!(h["more"], true);
    let seqs = |h: &serde_json::Value| {
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&h), vec![4, 5]);
    let h = reader
        .request(json!({"type":"history","with":"bob","before":4,"limit":2}))
        .await;
    assert_eq!(seqs(&h), vec![2, 3]);
    assert_eq!(h["more"], true);
    let h = reader
        .request(json!({"type":"history","with":"bob","before":2}))
        .await;
    assert_eq!(seqs(&h), vec![1]);
    assert_eq!(h["more"], false);
    let h = reader.request(json!({"type":"history","with":"bob"})).await;
    assert_eq!(seqs(&h), vec![1, 2, 3, 4, 5]);
    let h = reader
        .request(json!({"type":"history","with":"dave"}))
        .await;
    assert_eq!(
        (h["messages"].clone(), h["more"].clone()),
        (json!([]), json!(false))
    );
    node.stop().await;
}

async fn unread_counts_and_read_receipts(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut carol = node.session("carol").await;
    for i in 0..3 {
        alice.send_text("bob", &format!("a{i}"), "x").await;
    }
    carol.send_text("bob", "c0", "y").await;
    let mut bob1 = node.session("bob").await;
    let mut bob2 = node.session("bob").await;
    let u = bob1.request(json!({"type":"unread","rid":"u"})).await;
    assert_eq!(
        u,
        json!({"type":"unread","counts":{"alice":3,"carol":1},"rid":"u"})
    );
    // The sender's own count is untouched.
    assert_eq!(
        alice.request(json!({"type":"unread"})).await["counts"],
        json!({})
    );

    let ok = bob1
        .request(json!({"type":"read","with":"alice","seq":3,"rid":"rd"}))
        .await;
    assert_eq!(ok, json!({"type":"ok","rid":"rd"}));
    let receipt = json!({"type":"receipt","conv":"dm:alice:bob","reader":"bob","seq":3});
    assert_eq!(alice.recv().await, receipt);
    assert_eq!(bob2.recv().await, receipt);
    bob1.expect_silence(QUIET).await;
    carol.expect_silence(QUIET).await;
    assert_eq!(
        bob1.request(json!({"type":"unread"})).await["counts"],
        json!({"carol":1})
    );

    // Reading beyond the newest message is refused and changes nothing.
    let e = bob1
        .request(json!({"type":"read","with":"carol","seq":9,"rid":"z"}))
        .await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["rid"].as_str()),
        (Some("error"), Some("bad_request"), Some("z"))
    );
    assert_eq!(
        bob1.request(json!({"type":"unread"})).await["counts"],
        json!({"carol":1})
    );
    carol.expect_silence(QUIET).await;
    node.stop().await;
}

async fn voice_played_receipts_follow_the_rules(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let mut bob2 = node.session("bob").await;
    let voice = alice
        .request(json!({"type":"send","id":"v1","to":"bob","kind":"voice","body":"","media":{"url":"https://cdn/v.ogg","duration_s":7}}))
        .await;
    let m = &voice["msg"];
    assert_eq!(m["played"], false);
    assert_eq!(
        m["media"],
        json!({"url":"https://cdn/v.ogg","duration_s":7})
    );
    let id = m["id"].as_str().unwrap().to_owned();
    bob.recv().await;
    bob2.recv().await;
    let text = alice.send_text("bob", "t1", "not voice").await["msg"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.recv().await;
    bob2.recv().await;

    let e = alice
        .request(json!({"type":"played","msg":id,"rid":"p"}))
        .await;
    assert_eq!(
        (e["code"].as_str(), e["rid"].as_str()),
        (Some("forbidden"), Some("p"))
    );
    let mut eve = node.session("eve").await;
    assert_eq!(
        eve.request(json!({"type":"played","msg":id})).await["code"],
        "forbidden"
    );
    assert_eq!(
        bob.request(json!({"type":"played","msg":"01JDNOPE"})).await["code"],
        "not_found"
    );
    assert_eq!(
        bob.request(json!({"type":"played","msg":text})).await["code"],
        "bad_request"
    );

    assert_eq!(
        bob.request(json!({"type":"played","msg":id,"rid":"ok"}))
            .await,
        json!({"type":"ok","rid":"ok"})
    );
    let note = json!({"type":"played","msg":id,"conv":"dm:alice:bob","by":"bob"});
    assert_eq!(alice.recv().await, note);
    assert_eq!(bob2.recv().await, note);
    bob.expect_silence(QUIET).await;

    let h = bob.request(json!({"type":"history","with":"alice"})).await;
    assert_eq!(h["messages"][0]["played"], true);
    assert!(h["messages"][1].get("played").is_none());
    let s = bob.sync_all(0).await;
    assert_eq!(s[0]["msg"]["played"], true);
    node.stop().await;
}

async fn messages_to_oneself_make_one_inbox_entry(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut a1 = node.session("alice").await;
    let mut a2 = node.session("alice").await;
    let sent = a1.send_text("alice", "note", "remember milk").await;
    assert_eq!(sent["msg"]["conv"], "dm:alice:alice");
    let f = a2.recv().await;
    assert_eq!(
        (f["pts"].as_u64(), f["msg"]["seq"].as_u64()),
        (Some(1), Some(1))
    );
    a1.expect_silence(QUIET).await;
    a2.expect_silence(QUIET).await;
    assert_eq!(a1.sync_all(0).await.len(), 1);
    assert_eq!(
        a1.request(json!({"type":"unread"})).await["counts"],
        json!({})
    );
    node.stop().await;
}

async fn revoking_a_token_kicks_its_sessions(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let phone = node.token("alice", "ios").await;
    let laptop = node.token("alice", "web").await;
    let mut p1 = Client::connect(node.addr, &phone).await.expect_connected();
    let mut p2 = Client::connect(node.addr, &phone).await.expect_connected();
    let mut l = Client::connect(node.addr, &laptop).await.expect_connected();

    // Only the admin may revoke.
    let r = node
        .http()
        .delete(node.url(&format!("/v1/tokens/{phone}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = node
        .http()
        .delete(node.url(&format!("/v1/tokens/{phone}")))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    assert_eq!(node.revoke(&phone).await, 204);
    for c in [&mut p1, &mut p2] {
        let (frames, code) = c.closed().await;
        assert_eq!(
            frames,
            vec![json!({"type":"kicked","reason":"token_revoked"})]
        );
        assert_eq!(code, Some(4002));
    }
    // The laptop keeps working; the phone token no longer connects.
    assert_eq!(l.request(json!({"type":"ping"})).await["type"], "pong");
    let mut again = Client::connect(node.addr, &phone).await.0;
    assert_eq!(again.connected["code"], "unauthorized");
    assert_eq!(again.closed().await.1, Some(4001));
    assert_eq!(node.revoke(&phone).await, 404);
    node.stop().await;
}

async fn bad_frames_get_errors_and_change_nothing(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let cases = [
        ("{oops", None),
        ("[]", None),
        (r#"{"type":"dance","rid":"r1"}"#, Some("r1")),
        (r#"{"type":7}"#, None),
        (
            r#"{"type":"send","id":"c1","to":"bob","kind":"text","body":"","rid":"r2"}"#,
            Some("r2"),
        ),
        (
            r#"{"type":"send","id":"c1","to":"bob","kind":"sticker","body":"x"}"#,
            None,
        ),
        (
            r#"{"type":"send","id":"c1","to":"b o b","kind":"text","body":"x"}"#,
            None,
        ),
        (
            r#"{"type":"send","id":"c1","to":"bob","kind":"image","body":"x"}"#,
            None,
        ),
        (
            r#"{"type":"send","id":5,"to":"bob","kind":"text","body":"x"}"#,
            None,
        ),
        (r#"{"type":"sync","after":"zero"}"#, None),
        (r#"{"type":"sync","limit":5000}"#, None),
        (r#"{"type":"history","with":"bob","limit":-1}"#, None),
        (r#"{"type":"read","with":"bob"}"#, None),
        (r#"{"type":"connect","token":"x"}"#, None),
        (r#"{"type":"ping","rid":{"a":1}}"#, None),
    ];
    for (frame, rid) in cases {
        alice.send_raw(Message::Text(frame.into())).await;
        let e = alice.recv().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{frame} -> {e}"
        );
        assert!(!e["message"].as_str().unwrap().is_empty());
        assert_eq!(e["rid"].as_str(), rid, "{frame}");
    }
    // A refused send echoes its id.
    let e = alice
        .request(json!({"type":"send","id":"c9","to":"bob","kind":"gif","body":"x"}))
        .await;
    assert_eq!(e["id"], "c9");
    // Over the body limit (default 4096 bytes).
    let e = alice
        .request(json!({"type":"send","id":"big","to":"bob","kind":"text","body":"x".repeat(4097)}))
        .await;
    assert_eq!(e["code"], "bad_request");
    // Binary frames: bad_request, connection stays.
    alice.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(alice.recv().await["code"], "bad_request");
    // Still open, nothing stored, nobody disturbed.
    assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");
    assert_eq!(alice.sync_all(0).await.len(), 0);
    bob.expect_silence(QUIET).await;
    // A valid id after all that is new: the refused sends did not record it.
    assert_eq!(
        alice.send_text("bob", "c1", "finally").await["msg"]["seq"],
        1
    );
    node.stop().await;
}

async fn oversize_frames_close_1009_without_touching_others(b: Backend) {
    let node = TestNode::start(b, |c| c.max_frame_bytes = 1024).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    alice.send_raw(Message::Text("x".repeat(5000).into())).await;
    let (frames, code) = alice.closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["code"], "too_large");
    assert_eq!(code, Some(1009));
    // Bob is unaffected.
    assert_eq!(bob.request(json!({"type":"ping"})).await["type"], "pong");
    assert_eq!(bob.sync_all(0).await.len(), 0);
    node.stop().await;
}

async fn rate_limit_refuses_then_closes_abusers(b: Backend) {
    const BURST: u32 = 5;
    let node = TestNode::start(b, |c| {
        c.rate_per_s = 1;
        c.rate_burst = BURST;
    })
    .await;
    let mut calm = node.session("alice").await;
    // Before mallory's connection opens: its bucket is younger than this.
    let opened = Instant::now();
    let mut flood = node.session("mallory").await;
    // Pings one after another, each answered before the next is sent. An
    // allowed one is a pong (an error echoes `rid` too): count them until
    // the first refusal, however long the machine takes per ping.
    let mut allowed = 0u32;
    let (refusal, rid) = loop {
        let rid = format!("p{allowed}");
        let r = flood.request(json!({"type":"ping","rid":rid})).await;
        if r["type"] != "pong" {
            break (r, rid);
        }
        assert_eq!(r, json!({"type":"pong","rid":rid}));
        allowed += 1;
        assert!(allowed < 1000, "pings are never refused");
    };
    assert_eq!(
        (refusal["type"].as_str(), refusal["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{refusal}"
    );
    assert_eq!(refusal["rid"], rid.as_str());
    // The bucket holds BURST frames and gains one a second; `connect` was
    // a frame too.
    let frames = f64::from(allowed + 1);
    let most = f64::from(BURST) + opened.elapsed().as_secs_f64();
    assert!(
        frames >= f64::from(BURST) && frames <= most,
        "{frames} frames allowed, bucket allows {BURST} to {most:.1}"
    );
    // Keep flooding: refusals add to a debt that drains at half the rate
    // (0.5 a second here), and a debt of BURST closes 4003 (the closing
    // frame is not answered). A pong in between forgives nothing, so the
    // close comes after about BURST refusals, a few more on a slow machine.
    let mut refused = 1;
    let code = loop {
        flood.send(json!({"type":"ping"})).await;
        let event = common::within("a reply or the close", common::WAIT, flood.ws.next())
            .await
            .expect("connection open until closed")
            .expect("frame reads");
        match event {
            Message::Text(t) => {
                let r: serde_json::Value = serde_json::from_str(&t).unwrap();
                if r != json!({"type":"pong"}) {
                    assert_eq!(r["code"], "rate_limited", "{r}");
                    refused += 1;
                }
            }
            Message::Close(c) => break c.map(|c| u16::from(c.code)),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(refused < 2 * BURST, "still open after {refused} refusals");
    };
    assert_eq!(code, Some(4003));
    assert!(refused + 1 >= BURST, "closed after only {refused} refusals");
    // Other connections are not limited by it.
    assert_eq!(calm.request(json!({"type":"ping"})).await["type"], "pong");
    node.stop().await;
}
