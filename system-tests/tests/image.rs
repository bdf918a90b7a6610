//! A chat round trip with a chat-node running from its container image:
//! run by `scripts/images.sh test`, which starts the container and says
//! where (`PARLEY_IMAGE_CHAT`, host:port) and with which admin token
//! (`PARLEY_IMAGE_ADMIN`). Ignored by a plain `cargo test`.

use parley_system_tests::chat::{Chat, http};
use serde_json::json;

#[tokio::test]
#[ignore = "needs a chat-node container: run scripts/images.sh test"]
async fn a_message_goes_round_through_the_image() {
    let at = std::env::var("PARLEY_IMAGE_CHAT")
        .expect("PARLEY_IMAGE_CHAT")
        .parse()
        .expect("host:port");
    let admin = std::env::var("PARLEY_IMAGE_ADMIN").expect("PARLEY_IMAGE_ADMIN");
    let token = async |user: &str| {
        let body = json!({"user": user, "platform": "web"});
        let (status, v) = http(at, "POST", "/v1/tokens", Some(&admin), Some(&body))
            .await
            .expect("POST /v1/tokens answers");
        assert_eq!(status, 201, "{v}");
        v["token"].as_str().expect("a token").to_owned()
    };
    let mut bob = Chat::connect(at, "bob", &token("bob").await).await;
    let mut alice = Chat::connect(at, "alice", &token("alice").await).await;
    let sent = alice
        .request(json!({"type": "send", "id": "image-1", "to": "bob", "kind": "text", "body": "hello from the image"}))
        .await
        .expect("a reply");
    assert_eq!(sent["type"], "sent", "{sent}");
    let got = bob.recv().await.expect("bob receives");
    assert_eq!(got["type"], "msg", "{got}");
    assert_eq!(got["msg"]["body"], "hello from the image");
    assert_eq!(got["msg"]["from"], "alice");
    let synced = bob.sync_all(0).await;
    assert_eq!(synced.len(), 1, "{synced:?}");
}
