//! PROTOCOL.md 1.1 end to end, on the in-memory store and on Redis:
//! groups and their membership messages, group send/history/read/played,
//! the conversation list, typing and recall.

mod common;

use std::time::Duration;

use common::{Backend, Client, TestNode};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

both_stores!(
    a_created_group_reaches_every_member_and_syncs_offline,
    group_send_reaches_every_device_once_with_its_own_pts,
    group_read_and_unread_are_per_member,
    membership_changes_are_messages_and_the_removed_get_nothing_more,
    the_owner_leaving_hands_the_group_on_and_the_last_ends_it,
    bad_group_requests_change_nothing,
    played_in_a_group_is_for_members_but_the_sender,
    conversations_are_ordered_paged_and_track_reads,
    typing_reaches_live_peers_only_and_is_limited,
    recall_takes_content_back_everywhere,
    recall_refuses_others_twice_and_too_late,
    recall_in_a_group_tells_every_member,
    concurrent_group_writes_number_gap_free,
);

/// Creates a group; returns its id.
async fn create(c: &mut Client, name: &str, members: &[&str]) -> String {
    let r = c
        .request(json!({"type":"group_create","name":name,"members":members,"rid":"g"}))
        .await;
    assert_eq!(r["type"], "group", "{r}");
    assert_eq!(r["rid"], "g");
    r["group"]["id"].as_str().unwrap().to_owned()
}

/// The next frame, which must be a `msg`.
async fn msg(c: &mut Client) -> Value {
    let f = c.recv().await;
    assert_eq!(f["type"], "msg", "{f}");
    f
}

async fn gsend(c: &mut Client, group: &str, id: &str, body: &str) -> Value {
    let r = c
        .request(json!({"type":"send","id":id,"group":group,"kind":"text","body":body}))
        .await;
    assert_eq!(r["type"], "sent", "{r}");
    r
}

fn system_event(m: &Value) -> (&str, &str, Vec<&str>) {
    let s = &m["system"];
    (
        s["event"].as_str().unwrap(),
        s["by"].as_str().unwrap(),
        s["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap())
            .collect(),
    )
}

async fn a_created_group_reaches_every_member_and_syncs_offline(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let r = alice
        .request(
            json!({"type":"group_create","name":"Team","members":["bob","carol","bob","alice"]}),
        )
        .await;
    assert_eq!(r["type"], "group", "{r}");
    let g = &r["group"];
    let id = g["id"].as_str().unwrap();
    assert!(id.starts_with("g-") && id.len() == 28, "{id}");
    assert_eq!(g["name"], "Team");
    assert_eq!(g["owner"], "alice");
    assert_eq!(g["members"], json!(["alice", "bob", "carol"]));
    assert!(g["created"].as_u64().unwrap() > 0);

    // bob is online: the system message arrives live.
    let m = msg(&mut bob).await;
    assert_eq!(m["pts"], 1);
    let sys = &m["msg"];
    assert_eq!(sys["kind"], "system");
    assert_eq!(sys["conv"], format!("g:{id}"));
    assert_eq!(sys["group"], id);
    assert!(sys.get("to").is_none(), "{sys}");
    assert_eq!(sys["seq"], 1);
    assert_eq!(sys["body"], "");
    assert_eq!(
        system_event(sys),
        ("created", "alice", vec!["bob", "carol"])
    );
    // The creating session got its reply instead.
    alice.expect_silence(QUIET).await;

    // carol was offline: she finds it by sync.
    let mut carol = node.session("carol").await;
    assert_eq!(carol.pts(), 1);
    let entries = carol.sync_all(0).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["msg"]["id"], sys["id"]);

    // group_info for members, forbidden for others, not_found for unknown.
    let r = carol
        .request(json!({"type":"group_info","group":id,"rid":"i"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["rid"].as_str()),
        (Some("group"), Some("i"))
    );
    assert_eq!(r["group"], *g);
    let mut dave = node.session("dave").await;
    let r = dave.request(json!({"type":"group_info","group":id})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = dave
        .request(json!({"type":"group_info","group":"g-01JD0000000000000000000000"}))
        .await;
    assert_eq!(r["code"], "not_found", "{r}");
}

async fn group_send_reaches_every_device_once_with_its_own_pts(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut a1 = node.session("alice").await;
    let mut a2 = node.session("alice").await;
    let mut bob = node.session("bob").await;
    // bob has a one-to-one message first, so his pts differ from alice's.
    a1.send_text("bob", "dm-1", "hello").await;
    assert_eq!(msg(&mut a2).await["pts"], 1);
    assert_eq!(msg(&mut bob).await["pts"], 1);
    let id = create(&mut a1, "Team", &["bob", "carol"]).await;
    assert_eq!(msg(&mut a2).await["pts"], 2);
    assert_eq!(msg(&mut bob).await["pts"], 2);

    let sent = gsend(&mut a1, &id, "c-1", "hi all").await;
    let m = &sent["msg"];
    assert_eq!(
        (m["group"].as_str(), m["seq"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    assert!(m.get("to").is_none(), "{m}");
    assert_eq!(m["from"], "alice");
    for c in [&mut a2, &mut bob] {
        let f = msg(c).await;
        assert_eq!(f["msg"], *m);
        assert_eq!(f["pts"], 3);
    }
    // A retried client id is answered with the first message, stored once.
    let again = gsend(&mut a1, &id, "c-1", "hi all").await;
    assert_eq!(again["msg"], *m);
    a1.expect_silence(QUIET).await;

    // Every inbox holds it once: carol (offline) at her own pts 2.
    let mut carol = node.session("carol").await;
    let entries = carol.sync_all(0).await;
    let ids: Vec<&Value> = entries.iter().map(|e| &e["msg"]["id"]).collect();
    assert_eq!(ids, [&entries[0]["msg"]["id"], &m["id"]]);
    assert_eq!(entries[1]["pts"], 2);
    let bob_entries = bob.sync_all(0).await;
    assert_eq!(bob_entries.len(), 3);
    assert_eq!(bob_entries[2]["msg"]["id"], m["id"]);

    // History of the group, members only.
    let r = bob
        .request(json!({"type":"history","group":id,"rid":"h"}))
        .await;
    assert_eq!(r["type"], "history", "{r}");
    assert_eq!(r["group"], id.as_str());
    assert!(r.get("with").is_none());
    let seqs: Vec<u64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2]);
    // Everyone else stays quiet: no second copy anywhere.
    for c in [&mut a1, &mut a2, &mut bob, &mut carol] {
        c.expect_silence(QUIET).await;
    }
}

async fn group_read_and_unread_are_per_member(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let mut bob2 = node.session("bob").await;
    let id = create(&mut alice, "Team", &["bob", "carol"]).await;
    msg(&mut bob).await;
    msg(&mut bob2).await;
    for i in 0..3 {
        gsend(&mut alice, &id, &format!("c{i}"), "x").await;
        msg(&mut bob).await;
        msg(&mut bob2).await;
    }
    let key = format!("g:{id}");
    // System messages count for nobody, the sender's own for nobody.
    let r = bob.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({ key.clone(): 3 }), "{r}");
    let r = alice.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({}), "{r}");

    let r = bob
        .request(json!({"type":"read","group":id,"seq":4,"rid":"r"}))
        .await;
    assert_eq!(r, json!({"type":"ok","rid":"r"}));
    let receipt = json!({"type":"receipt","conv":key,"reader":"bob","seq":4});
    assert_eq!(alice.recv().await, receipt);
    assert_eq!(bob2.recv().await, receipt);
    let r = bob2.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({}), "{r}");
    let mut carol = node.session("carol").await;
    let r = carol.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({ key.clone(): 3 }), "{r}");
    // Beyond the end, and for non-members.
    let r = bob.request(json!({"type":"read","group":id,"seq":5})).await;
    assert_eq!(r["code"], "bad_request", "{r}");
    let mut dave = node.session("dave").await;
    let r = dave
        .request(json!({"type":"read","group":id,"seq":1}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    bob.expect_silence(QUIET).await;
}

async fn membership_changes_are_messages_and_the_removed_get_nothing_more(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let mut carol = node.session("carol").await;
    let id = create(&mut alice, "Team", &["bob", "carol"]).await;
    msg(&mut bob).await;
    msg(&mut carol).await;

    // Only the owner adds; dave is offline and learns it by sync.
    let r = bob
        .request(json!({"type":"group_add","group":id,"users":["erin"]}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = alice
        .request(json!({"type":"group_add","group":id,"users":["dave","bob"],"rid":"a"}))
        .await;
    assert_eq!(r, json!({"type":"ok","rid":"a"}));
    for c in [&mut bob, &mut carol] {
        let m = msg(c).await;
        assert_eq!(system_event(&m["msg"]), ("added", "alice", vec!["dave"]));
    }

    // An unread message for carol, then carol is removed: she gets the
    // removal message, then nothing more, and the group's unread count
    // (which she can no longer clear with `read`) goes.
    gsend(&mut alice, &id, "before", "carol sees this").await;
    msg(&mut bob).await;
    msg(&mut carol).await;
    let key = format!("g:{id}");
    let r = carol.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({ key.clone(): 1 }), "{r}");
    let r = alice
        .request(json!({"type":"group_remove","group":id,"users":["carol"]}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let removal = msg(&mut carol).await;
    assert_eq!(
        system_event(&removal["msg"]),
        ("removed", "alice", vec!["carol"])
    );
    assert_eq!(
        system_event(&msg(&mut bob).await["msg"]),
        ("removed", "alice", vec!["carol"])
    );
    gsend(&mut alice, &id, "after", "carol must not see this").await;
    msg(&mut bob).await;
    carol.expect_silence(QUIET).await;
    let entries = carol.sync_all(0).await;
    assert_eq!(entries.last().unwrap()["msg"]["id"], removal["msg"]["id"]);
    assert_eq!(entries.len(), 4);
    let r = carol.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({}), "{r}");
    // history, send and read in that group are forbidden to her now.
    let r = carol.request(json!({"type":"history","group":id})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = carol
        .request(json!({"type":"send","id":"x","group":id,"kind":"text","body":"b"}))
        .await;
    assert_eq!(
        (r["code"].as_str(), r["id"].as_str()),
        (Some("forbidden"), Some("x"))
    );
    let r = carol
        .request(json!({"type":"read","group":id,"seq":1}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = carol.request(json!({"type":"group_info","group":id})).await;
    assert_eq!(r["code"], "forbidden", "{r}");

    // dave, offline all along: created is before his time; added,
    // removed and the message after are his, in order.
    let mut dave = node.session("dave").await;
    let entries = dave.sync_all(0).await;
    let kinds: Vec<String> = entries
        .iter()
        .map(|e| match e["msg"]["system"]["event"].as_str() {
            Some(ev) => ev.to_owned(),
            None => e["msg"]["body"].as_str().unwrap().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "added",
            "carol sees this",
            "removed",
            "carol must not see this"
        ]
    );
    let pts: Vec<u64> = entries.iter().map(|e| e["pts"].as_u64().unwrap()).collect();
    assert_eq!(pts, [1, 2, 3, 4]);
    // Re-adding brings her back.
    let r = alice
        .request(json!({"type":"group_add","group":id,"users":["carol"]}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    assert_eq!(system_event(&msg(&mut carol).await["msg"]).0, "added");
    let r = carol.request(json!({"type":"history","group":id})).await;
    assert_eq!(r["type"], "history", "{r}");
}

async fn the_owner_leaving_hands_the_group_on_and_the_last_ends_it(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let id = create(&mut alice, "Team", &["bob", "carol"]).await;
    msg(&mut bob).await;
    let r = alice
        .request(json!({"type":"group_remove","group":id,"users":["alice"]}))
        .await;
    assert_eq!(r["code"], "bad_request", "{r}");
    let r = alice
        .request(json!({"type":"group_leave","group":id,"rid":"l"}))
        .await;
    assert_eq!(r, json!({"type":"ok","rid":"l"}));
    // bob joined earliest after alice: he owns it now.
    let left = msg(&mut bob).await;
    assert_eq!(system_event(&left["msg"]), ("left", "alice", vec!["alice"]));
    let owner = msg(&mut bob).await;
    assert_eq!(system_event(&owner["msg"]), ("owner", "alice", vec!["bob"]));
    assert_eq!(owner["pts"].as_u64(), left["pts"].as_u64().map(|p| p + 1));
    let r = bob.request(json!({"type":"group_info","group":id})).await;
    assert_eq!(r["group"]["owner"], "bob", "{r}");
    assert_eq!(r["group"]["members"], json!(["bob", "carol"]));
    // alice got "left" and nothing more.
    alice.expect_silence(QUIET).await;
    let mine = alice.sync_all(0).await;
    assert_eq!(mine.len(), 2, "created and left: {mine:?}");
    let r = alice
        .request(json!({"type":"group_leave","group":id}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");

    // carol leaves with a message unread: its count goes with her.
    gsend(&mut bob, &id, "b1", "hi").await;
    let mut carol = node.session("carol").await;
    let key = format!("g:{id}");
    let r = carol.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({ key: 1 }), "{r}");
    let r = carol
        .request(json!({"type":"group_leave","group":id}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let r = carol.request(json!({"type":"unread"})).await;
    assert_eq!(r["counts"], json!({}), "{r}");
    assert_eq!(system_event(&msg(&mut bob).await["msg"]).0, "left");
    let r = bob.request(json!({"type":"group_leave","group":id})).await;
    assert_eq!(r["type"], "ok", "{r}");
    // The last member left: the group is gone.
    let r = bob.request(json!({"type":"group_info","group":id})).await;
    assert_eq!(r["code"], "not_found", "{r}");
    let r = bob
        .request(json!({"type":"send","id":"z","group":id,"kind":"text","body":"b"}))
        .await;
    assert_eq!(r["code"], "not_found", "{r}");
}

async fn bad_group_requests_change_nothing(b: Backend) {
    let node = TestNode::start(b, |c| c.max_group_members = 3).await;
    let mut alice = node.session("alice").await;
    let bad = json!("g-01JD0000000000000000000000");
    let cases = [
        json!({"type":"send","id":"b1","to":"bob","group":bad,"kind":"text","body":"x"}),
        json!({"type":"send","id":"b2","kind":"text","body":"x"}),
        json!({"type":"send","id":"b3","group":"g-nope","kind":"text","body":"x"}),
        json!({"type":"send","id":"b4","to":"bob","kind":"system","body":"x"}),
        json!({"type":"history","with":"bob","group":bad}),
        json!({"type":"read","seq":1}),
        json!({"type":"typing","to":"bob","group":bad}),
        json!({"type":"group_create","members":["bob"]}),
        json!({"type":"group_create","name":"","members":["bob"]}),
        json!({"type":"group_create","name":"x".repeat(65),"members":["bob"]}),
        json!({"type":"group_create","name":"T","members":["b b"]}),
        json!({"type":"group_create","name":"T","members":"bob"}),
        // The list alone is longer than a group may be.
        json!({"type":"group_create","name":"T","members":["b","c","d","e"]}),
        json!({"type":"group_add","group":bad,"users":[]}),
        json!({"type":"recall"}),
        json!({"type":"conversations","limit":201}),
    ];
    for (i, c) in cases.iter().enumerate() {
        let r = alice.request(c.clone()).await;
        assert_eq!(r["code"], "bad_request", "case {i}: {c} -> {r}");
    }
    // Three with the owner is the limit: one more is refused whole.
    let r = alice
        .request(json!({"type":"group_create","name":"T","members":["b","c","d"]}))
        .await;
    assert_eq!(r["code"], "bad_request", "{r}");
    let id = create(&mut alice, "T", &["b", "c"]).await;
    let r = alice
        .request(json!({"type":"group_add","group":id,"users":["d"]}))
        .await;
    assert_eq!(r["code"], "bad_request", "{r}");
    assert!(r["message"].as_str().unwrap().contains("at most 3"), "{r}");
    let r = alice.request(json!({"type":"group_info","group":id})).await;
    assert_eq!(r["group"]["members"], json!(["alice", "b", "c"]));
    // Unknown groups are not found, non-members forbidden.
    let r = alice
        .request(json!({"type":"send","id":"u","group":bad,"kind":"text","body":"x"}))
        .await;
    assert_eq!(
        (r["code"].as_str(), r["id"].as_str()),
        (Some("not_found"), Some("u"))
    );
    for c in [
        json!({"type":"group_add","group":bad,"users":["x"]}),
        json!({"type":"group_remove","group":bad,"users":["x"]}),
        json!({"type":"group_leave","group":bad}),
        json!({"type":"history","group":bad}),
    ] {
        let r = alice.request(c.clone()).await;
        assert_eq!(r["code"], "not_found", "{c} -> {r}");
    }
    let mut mallory = node.session("mallory").await;
    for c in [
        json!({"type":"send","id":"m","group":id,"kind":"text","body":"x"}),
        json!({"type":"group_add","group":id,"users":["x"]}),
        json!({"type":"group_remove","group":id,"users":["b"]}),
        json!({"type":"group_leave","group":id}),
        json!({"type":"history","group":id}),
        json!({"type":"typing","group":id}),
    ] {
        let r = mallory.request(c.clone()).await;
        assert_eq!(r["code"], "forbidden", "{c} -> {r}");
    }
    // Nothing of the refused was stored: alice's inbox holds only the
    // one created group.
    assert_eq!(alice.sync_all(0).await.len(), 1);
    assert_eq!(mallory.sync_all(0).await.len(), 0);
    let r = alice.request(json!({"type":"history","group":id})).await;
    assert_eq!(r["messages"].as_array().unwrap().len(), 1, "{r}");
}

async fn played_in_a_group_is_for_members_but_the_sender(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let mut carol = node.session("carol").await;
    let id = create(&mut alice, "Team", &["bob", "carol"]).await;
    msg(&mut bob).await;
    msg(&mut carol).await;
    let r = alice
        .request(json!({"type":"send","id":"v","group":id,"kind":"voice","media":{"url":"https://x/v.ogg","duration_s":2}}))
        .await;
    assert_eq!(r["type"], "sent", "{r}");
    let vid = r["msg"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["msg"]["played"], false);
    msg(&mut bob).await;
    msg(&mut carol).await;
    let r = alice.request(json!({"type":"played","msg":vid})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let mut dave = node.session("dave").await;
    let r = dave.request(json!({"type":"played","msg":vid})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = bob.request(json!({"type":"played","msg":vid})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let event = json!({"type":"played","msg":vid,"conv":format!("g:{id}"),"by":"bob"});
    assert_eq!(alice.recv().await, event);
    assert_eq!(carol.recv().await, event);
    let r = carol.request(json!({"type":"history","group":id})).await;
    assert_eq!(r["messages"][1]["played"], true, "{r}");
}

async fn conversations_are_ordered_paged_and_track_reads(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut b1 = node.session("bob").await;
    let mut b2 = node.session("bob").await;
    let r = alice.request(json!({"type":"conversations"})).await;
    assert_eq!(r, json!({"type":"conversations","items":[],"more":false}));
    // Distinct milliseconds, so the order is the order of activity.
    let pause = || tokio::time::sleep(Duration::from_millis(5));
    alice.send_text("bob", "d1", "one").await;
    pause().await;
    alice.send_text("carol", "d2", "to carol").await;
    pause().await;
    let id = create(&mut alice, "Team", &["bob"]).await;
    pause().await;
    let last_group = gsend(&mut alice, &id, "g1", "group says").await;
    pause().await;
    alice.send_text("bob", "d3", "two").await;
    let last_dm = alice.send_text("bob", "d4", "three").await;

    let r = alice
        .request(json!({"type":"conversations","rid":"c"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["rid"].as_str()),
        (Some("conversations"), Some("c"))
    );
    let items = r["items"].as_array().unwrap();
    let convs: Vec<&str> = items.iter().map(|i| i["conv"].as_str().unwrap()).collect();
    let gconv = format!("g:{id}");
    assert_eq!(convs, ["dm:alice:bob", gconv.as_str(), "dm:alice:carol"]);
    assert_eq!(r["more"], false);
    let dm = &items[0];
    assert_eq!(dm["with"], "bob");
    assert_eq!(dm["last"], last_dm["msg"]);
    assert_eq!(
        (
            dm["unread"].as_u64(),
            dm["read_seq"].as_u64(),
            dm["peer_read_seq"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(dm["updated"], last_dm["msg"]["ts"]);
    let g = &items[1];
    assert_eq!(g["group"], json!({"id": id, "name": "Team"}));
    assert!(
        g.get("with").is_none() && g.get("peer_read_seq").is_none(),
        "{g}"
    );
    assert_eq!(g["last"], last_group["msg"]);

    // bob reads the chat with alice on one device: his other device and
    // alice see it in their lists.
    for _ in 0..5 {
        msg(&mut b1).await;
        msg(&mut b2).await;
    }
    let r = b2.request(json!({"type":"conversations"})).await;
    let items = r["items"].as_array().unwrap();
    assert_eq!(items[0]["conv"], "dm:alice:bob");
    assert_eq!(items[0]["unread"], 3);
    assert_eq!(items[1]["unread"], 1);
    let r = b1
        .request(json!({"type":"read","with":"alice","seq":2}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    assert_eq!(b2.recv().await["type"], "receipt");
    assert_eq!(alice.recv().await["type"], "receipt");
    let r = b2.request(json!({"type":"conversations"})).await;
    let dm = &r["items"][0];
    assert_eq!(
        (dm["unread"].as_u64(), dm["read_seq"].as_u64()),
        (Some(0), Some(2)),
        "{dm}"
    );
    let r = alice.request(json!({"type":"conversations"})).await;
    assert_eq!(r["items"][0]["peer_read_seq"], 2, "{r}");
    let r = b1.request(json!({"type":"read","group":id,"seq":2})).await;
    assert_eq!(r["type"], "ok", "{r}");
    assert_eq!(alice.recv().await["type"], "receipt");
    let r = b1.request(json!({"type":"conversations"})).await;
    assert_eq!(
        (
            r["items"][1]["unread"].as_u64(),
            r["items"][1]["read_seq"].as_u64()
        ),
        (Some(0), Some(2)),
        "{r}"
    );

    // Pages of one, following `before`: the same three, each once.
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut q = json!({"type":"conversations","limit":1});
        if let Some(b) = before {
            q["before"] = json!(b);
        }
        let r = alice.request(q).await;
        let items = r["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{r}");
        seen.push(items[0]["conv"].as_str().unwrap().to_owned());
        before = items[0]["updated"].as_u64();
        if r["more"] == false {
            break;
        }
        assert!(seen.len() < 5, "{seen:?}");
    }
    assert_eq!(seen, ["dm:alice:bob", gconv.as_str(), "dm:alice:carol"]);
    // carol never wrote to alice but got her message: it is in her list.
    let mut carol = node.session("carol").await;
    let r = carol.request(json!({"type":"conversations"})).await;
    assert_eq!(r["items"][0]["with"], "alice", "{r}");
    assert_eq!(r["items"][0]["unread"], 1, "{r}");
}

async fn typing_reaches_live_peers_only_and_is_limited(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut a1 = node.session("alice").await;
    let mut a2 = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let mut carol = node.session("carol").await;
    a1.send(json!({"type":"typing","to":"bob","rid":"t"})).await;
    // No reply: the next frame a1 gets answers its ping.
    assert_eq!(a1.request(json!({"type":"ping"})).await["type"], "pong");
    let t = json!({"type":"typing","conv":"dm:alice:bob","from":"alice"});
    assert_eq!(bob.recv().await, t);
    // Within 2 s the same conversation is dropped, another goes on.
    a1.send(json!({"type":"typing","to":"bob"})).await;
    a1.send(json!({"type":"typing","to":"carol"})).await;
    assert_eq!(
        carol.recv().await,
        json!({"type":"typing","conv":"dm:alice:carol","from":"alice"})
    );
    // Another session of alice has a limit of its own.
    a2.send(json!({"type":"typing","to":"bob"})).await;
    assert_eq!(bob.recv().await, t);
    bob.expect_silence(QUIET).await;
    a2.expect_silence(Duration::from_millis(50)).await;

    let id = create(&mut a1, "Team", &["bob", "carol"]).await;
    msg(&mut a2).await;
    msg(&mut bob).await;
    msg(&mut carol).await;
    a1.send(json!({"type":"typing","group":id})).await;
    let gt = json!({"type":"typing","conv":format!("g:{id}"),"from":"alice"});
    assert_eq!(bob.recv().await, gt);
    assert_eq!(carol.recv().await, gt);
    a2.expect_silence(QUIET).await;
    // After the interval, the dropped conversation passes again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    a1.send(json!({"type":"typing","to":"bob"})).await;
    assert_eq!(bob.recv().await, t);
    // Nothing was stored: inboxes hold only the group's creation.
    assert_eq!(bob.sync_all(0).await.len(), 1);
    assert_eq!(a1.sync_all(0).await.len(), 1);
}

async fn recall_takes_content_back_everywhere(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut a1 = node.session("alice").await;
    let mut a2 = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let sent = a1
        .request(json!({"type":"send","id":"i","to":"bob","kind":"image","body":"","media":{"url":"https://x/secret.jpg"}}))
        .await;
    assert_eq!(sent["type"], "sent", "{sent}");
    let mid = sent["msg"]["id"].as_str().unwrap().to_owned();
    msg(&mut a2).await;
    msg(&mut bob).await;
    let r = a1
        .request(json!({"type":"recall","msg":mid,"rid":"rc"}))
        .await;
    assert_eq!(r, json!({"type":"ok","rid":"rc"}));
    // Live sessions hear it with their own pts.
    for c in [&mut a2, &mut bob] {
        let f = c.recv().await;
        assert_eq!(
            f,
            json!({"type":"recalled","pts":2,"msg":mid,"conv":"dm:alice:bob","by":"alice"})
        );
    }
    a1.expect_silence(QUIET).await;
    // The content is gone from history and sync; the event syncs.
    let r = bob.request(json!({"type":"history","with":"alice"})).await;
    let m = &r["messages"][0];
    assert_eq!(
        (m["recalled"].as_bool(), m["body"].as_str()),
        (Some(true), Some("")),
        "{m}"
    );
    assert!(m.get("media").is_none(), "{m}");
    let mut bob_phone = node.session("bob").await;
    assert_eq!(bob_phone.pts(), 2);
    let entries = bob_phone.sync_all(0).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["msg"]["recalled"], true);
    assert!(entries[0]["msg"].get("media").is_none());
    assert_eq!(
        entries[1],
        json!({"pts":2,"event":{"type":"recalled","msg":mid,"conv":"dm:alice:bob","by":"alice"}})
    );
    // And from the conversation list.
    let r = bob.request(json!({"type":"conversations"})).await;
    assert_eq!(r["items"][0]["last"]["recalled"], true, "{r}");
    assert!(r["items"][0]["last"].get("media").is_none(), "{r}");
    // Later messages number on from the event.
    a1.send_text("bob", "after", "x").await;
    assert_eq!(msg(&mut bob).await["pts"], 3);
}

async fn recall_refuses_others_twice_and_too_late(b: Backend) {
    let node = TestNode::start(b, |c| c.recall_window_s = 1).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let mid = alice.send_text("bob", "1", "a").await["msg"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    msg(&mut bob).await;
    let r = bob.request(json!({"type":"recall","msg":mid})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = alice
        .request(json!({"type":"recall","msg":"01JD0000000000000000000000"}))
        .await;
    assert_eq!(r["code"], "not_found", "{r}");
    let r = alice.request(json!({"type":"recall","msg":mid})).await;
    assert_eq!(r["type"], "ok", "{r}");
    bob.recv().await;
    let r = alice.request(json!({"type":"recall","msg":mid})).await;
    assert_eq!(r["code"], "bad_request", "{r}");
    // Past the window.
    let late = alice.send_text("bob", "2", "b").await["msg"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    msg(&mut bob).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = alice.request(json!({"type":"recall","msg":late})).await;
    assert_eq!(r["code"], "bad_request", "{r}");
    let r = bob.request(json!({"type":"history","with":"alice"})).await;
    assert_eq!(r["messages"][1]["body"], "b", "nothing changed: {r}");
    // Each refusal left the inboxes alone: two messages, one event.
    assert_eq!(bob.sync_all(0).await.len(), 3);
    bob.expect_silence(QUIET).await;

    // recall_window_s = 0 disables recall.
    let off = TestNode::start(b, |c| c.recall_window_s = 0).await;
    let mut alice = off.session("alice").await;
    let mid = alice.send_text("bob", "1", "a").await["msg"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = alice.request(json!({"type":"recall","msg":mid})).await;
    assert_eq!(r["code"], "bad_request", "{r}");
}

async fn recall_in_a_group_tells_every_member(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let id = create(&mut alice, "Team", &["bob", "carol"]).await;
    msg(&mut bob).await;
    let mid = gsend(&mut alice, &id, "g", "oops").await["msg"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    msg(&mut bob).await;
    let r = bob.request(json!({"type":"recall","msg":mid})).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = alice.request(json!({"type":"recall","msg":mid})).await;
    assert_eq!(r["type"], "ok", "{r}");
    let f = bob.recv().await;
    assert_eq!(
        (f["type"].as_str(), f["pts"].as_u64(), f["conv"].as_str()),
        (Some("recalled"), Some(3), Some(format!("g:{id}").as_str()))
    );
    // carol was offline: her inbox has the message, then the event.
    let mut carol = node.session("carol").await;
    let entries = carol.sync_all(0).await;
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1]["msg"]["recalled"], true);
    assert_eq!(entries[1]["msg"]["body"], "");
    assert_eq!(entries[2]["event"]["msg"], mid.as_str());
    let r = carol.request(json!({"type":"history","group":id})).await;
    assert_eq!(r["messages"][1]["recalled"], true, "{r}");
}

async fn concurrent_group_writes_number_gap_free(b: Backend) {
    let node = TestNode::start(b, |c| c.rate_burst = 1000).await;
    let mut alice = node.session("alice").await;
    let id = create(&mut alice, "Busy", &["bob", "carol"]).await;
    // Three members write at once, and the owner adds and removes meanwhile.
    let mut tasks = Vec::new();
    for user in ["bob", "carol"] {
        let mut c = node.session(user).await;
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                c.send(json!({"type":"send","id":format!("{user}{i}"),"group":id,"kind":"text","body":"x"}))
                    .await;
            }
            let mut sent = 0;
            while sent < 20 {
                if c.recv().await["type"] == "sent" {
                    sent += 1;
                }
            }
        }));
    }
    for i in 0..10 {
        alice
            .send(json!({"type":"group_add","group":id,"users":[format!("x{i}")],"rid":"add"}))
            .await;
        // The members' messages arrive in between.
        let r = loop {
            let f = alice.recv().await;
            if f["type"] != "msg" {
                break f;
            }
        };
        assert_eq!(r, json!({"type":"ok","rid":"add"}));
    }
    for t in tasks {
        common::within("the writers", common::STEP, t)
            .await
            .unwrap();
    }
    // What is still on its way to alice before her history replies.
    let mut quiet = alice;
    while let Ok(Some(Ok(_))) =
        tokio::time::timeout(QUIET, futures_util::StreamExt::next(&mut quiet.ws)).await
    {}
    let mut alice = quiet;
    let mut seqs = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut q = json!({"type":"history","group":id,"limit":200});
        if let Some(b) = before {
            q["before"] = json!(b);
        }
        let r = alice.request(q).await;
        let page: Vec<u64> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        before = page.first().copied();
        seqs.splice(0..0, page);
        if r["more"] == false {
            break;
        }
    }
    // created, 40 messages, 10 additions: each its own seq, no gap.
    assert_eq!(seqs, (1..=51).collect::<Vec<_>>());
    let r = alice.request(json!({"type":"group_info","group":id})).await;
    assert_eq!(r["group"]["members"].as_array().unwrap().len(), 13, "{r}");
}
