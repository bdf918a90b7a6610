//! JWT connect tokens (PROTOCOL.md 1.1): tokens minted here with real keys
//! (HS256 secrets, RSA and P-256 pairs made by `openssl` for each test),
//! every refusal seen as `unauthorized` and close 4001, sessions ending at
//! `exp`, and `jti` revocation kicking sessions on every node.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cluster::Cluster;
use common::{ADMIN, Backend, Client, STEP, TestNode, eventually};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "an-application-secret-of-32-bytes!";

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A directory of its own for one test's key files.
fn key_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("parley-jwt-{tag}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A key pair made by openssl: (private PEM, public PEM file).
struct Pair {
    private: Vec<u8>,
    public_path: PathBuf,
}

impl Pair {
    fn generate(dir: &Path, name: &str, args: &[&str]) -> Pair {
        let private_path = dir.join(format!("{name}.key"));
        let public_path = dir.join(format!("{name}.pub"));
        let ok = Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&private_path)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs")
            .success();
        assert!(ok, "openssl genpkey {args:?}");
        let ok = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private_path)
            .arg("-out")
            .arg(&public_path)
            .status()
            .expect("openssl runs")
            .success();
        assert!(ok, "openssl pkey -pubout");
        Pair {
            private: std::fs::read(private_path).unwrap(),
            public_path,
        }
    }
    fn rsa(dir: &Path, name: &str) -> Pair {
        Pair::generate(
            dir,
            name,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        )
    }
    fn ec(dir: &Path, name: &str) -> Pair {
        Pair::generate(
            dir,
            name,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
    }
    fn encoding(&self, alg: Algorithm) -> EncodingKey {
        match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private).unwrap(),
            _ => unreachable!(),
        }
    }
    fn public_pem(&self) -> Vec<u8> {
        std::fs::read(&self.public_path).unwrap()
    }
    /// The public key as a JWK with `kid`.
    fn jwk(&self, alg: Algorithm, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding(alg), alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }
}

fn write_jwks(path: &Path, keys: Vec<Jwk>) {
    // Written aside and renamed, as a mounted ConfigMap changes.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

/// Claims that pass: `sub` and an `exp` an hour away.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now_s() + 3600, "iat": now_s()})
}

/// Asserts the node refuses `token` with `unauthorized`, then close 4001.
async fn assert_refused(node: &TestNode, token: &str, why: &str) {
    let mut c = Client::connect(node.addr, token).await.0;
    assert_eq!(c.connected["type"], "error", "{why}: {}", c.connected);
    assert_eq!(
        c.connected["code"], "unauthorized",
        "{why}: {}",
        c.connected
    );
    let (_, code) = c.closed().await;
    assert_eq!(code, Some(4001), "{why}");
}

async fn assert_accepted(node: &TestNode, token: &str, user: &str) -> Client {
    let c = Client::connect(node.addr, token).await.expect_connected();
    assert_eq!(c.user(), user);
    c
}

both_stores!(
    hs256_tokens_open_sessions_and_every_bad_one_is_refused,
    rs256_and_es256_keys_accept_their_algorithm_only,
    a_session_ends_at_its_jwt_exp,
    a_revoked_jti_kicks_its_sessions_and_is_refused_until_exp,
    a_jti_revoked_before_use_is_refused,
);

async fn hs256_tokens_open_sessions_and_every_bad_one_is_refused(b: Backend) {
    let node = TestNode::start(b, |c| {
        c.jwt_secret = Some(SECRET.into());
        c.jwt_issuer = Some("app".into());
        c.jwt_audience = Some("chat".into());
    })
    .await;
    let good = |sub: &str| {
        let mut c = claims(sub);
        c["iss"] = "app".into();
        c["aud"] = "chat".into();
        c
    };
    let mut alice = assert_accepted(&node, &hs256(&good("alice")), "alice").await;
    // The session works like any other: a message to bob is stored.
    alice.send_text("bob", "c-1", "hi").await;
    let mut with_platform = good("bob");
    with_platform["platform"] = "ios".into();
    assert_accepted(&node, &hs256(&with_platform), "bob").await;
    // Opaque tokens from /v1/tokens keep working beside JWTs.
    let opaque = node.token("carol", "web").await;
    assert_accepted(&node, &opaque, "carol").await;

    let wrong_secret = sign(
        Algorithm::HS256,
        None,
        &good("alice"),
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes"),
    );
    assert_refused(&node, &wrong_secret, "wrong secret").await;
    // alg none: a valid token's claims under the header
    // {"alg":"none","typ":"JWT"}, the signature part empty.
    let valid = hs256(&good("alice"));
    let payload = valid.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    assert_refused(&node, &none, "alg none").await;
    // A valid token with its signature cut off.
    let token = hs256(&good("alice"));
    let unsigned = format!("{}.", &token[..token.rfind('.').unwrap()]);
    assert_refused(&node, &unsigned, "no signature").await;
    // Another algorithm than the secret's, with the same secret.
    let hs512 = sign(
        Algorithm::HS512,
        None,
        &good("alice"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert_refused(&node, &hs512, "HS512 for an HS256 secret").await;

    let mut expired = good("alice");
    expired["exp"] = (now_s() - 120).into();
    assert_refused(&node, &hs256(&expired), "expired").await;
    let mut early = good("alice");
    early["nbf"] = (now_s() + 3600).into();
    assert_refused(&node, &hs256(&early), "nbf in the future").await;
    let mut no_sub = good("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_refused(&node, &hs256(&no_sub), "missing sub").await;
    let mut no_exp = good("alice");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(&node, &hs256(&no_exp), "missing exp").await;
    for bad in ["a:b", "", "x y", &"a".repeat(65)] {
        assert_refused(&node, &hs256(&good(bad)), &format!("sub {bad:?}")).await;
    }
    let mut bad_platform = good("alice");
    bad_platform["platform"] = "Not Valid".into();
    assert_refused(&node, &hs256(&bad_platform), "bad platform").await;
    let mut wrong_iss = good("alice");
    wrong_iss["iss"] = "someone-else".into();
    assert_refused(&node, &hs256(&wrong_iss), "wrong iss").await;
    let mut no_iss = good("alice");
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_refused(&node, &hs256(&no_iss), "missing iss").await;
    let mut wrong_aud = good("alice");
    wrong_aud["aud"] = "other".into();
    assert_refused(&node, &hs256(&wrong_aud), "wrong aud").await;
    let mut no_aud = good("alice");
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_refused(&node, &hs256(&no_aud), "missing aud").await;
    assert_refused(&node, "a.b.c", "garbage in JWT shape").await;

    let (_, metrics) = node.get("/metrics").await;
    let refused = common::metric_value(&metrics, "chat_jwt_refused_total").unwrap();
    assert!(refused >= 15.0, "refusals counted: {refused}");
    // Alice's session lived through all of it.
    alice.send_text("bob", "c-2", "still here").await;
}

async fn rs256_and_es256_keys_accept_their_algorithm_only(b: Backend) {
    let dir = key_dir("pem");
    let rsa = Pair::rsa(&dir, "rsa");
    let ec = Pair::ec(&dir, "ec");
    let other_rsa = Pair::rsa(&dir, "other");

    let node = TestNode::start(b, |c| c.jwt_public_key = Some(rsa.public_path.clone())).await;
    let rs =
        |c: &Value, key: &Pair| sign(Algorithm::RS256, None, c, &key.encoding(Algorithm::RS256));
    assert_accepted(&node, &rs(&claims("alice"), &rsa), "alice").await;
    assert_refused(&node, &rs(&claims("alice"), &other_rsa), "another RSA key").await;
    // Algorithm confusion: HS256 "signed" with the public key as secret.
    let confused = sign(
        Algorithm::HS256,
        None,
        &claims("alice"),
        &EncodingKey::from_secret(&rsa.public_pem()),
    );
    assert_refused(&node, &confused, "HS256 with the RSA public key as secret").await;
    let es = sign(
        Algorithm::ES256,
        None,
        &claims("alice"),
        &ec.encoding(Algorithm::ES256),
    );
    assert_refused(&node, &es, "ES256 on an RSA node").await;
    let mut expired = claims("alice");
    expired["exp"] = (now_s() - 120).into();
    assert_refused(&node, &rs(&expired, &rsa), "expired RS256").await;
    drop(node);

    // A node with both an HS256 secret and an EC key takes each for its own
    // algorithm, and still not the public key as an HMAC secret.
    let node = TestNode::start(b, |c| {
        c.jwt_public_key = Some(ec.public_path.clone());
        c.jwt_secret = Some(SECRET.into());
    })
    .await;
    assert_accepted(&node, &es, "alice").await;
    assert_accepted(&node, &hs256(&claims("bob")), "bob").await;
    let confused = sign(
        Algorithm::HS256,
        None,
        &claims("alice"),
        &EncodingKey::from_secret(&ec.public_pem()),
    );
    assert_refused(&node, &confused, "HS256 with the EC public key as secret").await;
    assert_refused(&node, &rs(&claims("alice"), &rsa), "RS256 on an EC node").await;
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}

async fn a_session_ends_at_its_jwt_exp(b: Backend) {
    let node = TestNode::start(b, |c| c.jwt_secret = Some(SECRET.into())).await;
    let mut c = claims("alice");
    c["exp"] = (now_s() + 3).into();
    let mut alice = assert_accepted(&node, &hs256(&c), "alice").await;
    // Closed as any session whose token expired: `kicked`, 4002.
    let (frames, code) = alice.closed().await;
    assert_eq!(code, Some(4002), "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "kicked" && f["reason"] == "token_expired"),
        "{frames:?}"
    );
}

async fn a_revoked_jti_kicks_its_sessions_and_is_refused_until_exp(b: Backend) {
    let node = TestNode::start(b, |c| c.jwt_secret = Some(SECRET.into())).await;
    let mut c = claims("alice");
    c["jti"] = "login-1".into();
    let token = hs256(&c);
    let mut phone = assert_accepted(&node, &token, "alice").await;
    let mut tablet = assert_accepted(&node, &token, "alice").await;
    let mut other = claims("alice");
    other["jti"] = "login-2".into();
    let mut desktop = assert_accepted(&node, &hs256(&other), "alice").await;

    assert_eq!(node.revoke("jti:login-1").await, 204);
    for s in [&mut phone, &mut tablet] {
        let (frames, code) = s.closed().await;
        assert_eq!(code, Some(4002), "{frames:?}");
        assert!(
            frames
                .iter()
                .any(|f| f["type"] == "kicked" && f["reason"] == "token_revoked"),
            "{frames:?}"
        );
    }
    // Another jti of the same user is untouched.
    desktop.send_text("bob", "c-1", "still here").await;
    assert_refused(&node, &token, "revoked jti").await;
    // Revoking again is fine (idempotent); bad jtis are refused.
    assert_eq!(node.revoke("jti:login-1").await, 204);
    assert_eq!(node.revoke(&format!("jti:{}", "x".repeat(300))).await, 400);
    assert_eq!(node.revoke("jti:").await, 400);
    let r = node
        .http()
        .delete(node.url("/v1/tokens/jti:login-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "revocation is for the admin");
    desktop
        .send_text("bob", "c-2", "not revoked by a stranger")
        .await;
}

async fn a_jti_revoked_before_use_is_refused(b: Backend) {
    let node = TestNode::start(b, |c| c.jwt_secret = Some(SECRET.into())).await;
    assert_eq!(node.revoke("jti:never-used").await, 204);
    let mut c = claims("alice");
    c["jti"] = "never-used".into();
    assert_refused(&node, &hs256(&c), "jti revoked before use").await;
    c["jti"] = "fresh".into();
    assert_accepted(&node, &hs256(&c), "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_are_chosen_by_kid_and_reloaded_when_the_file_changes() {
    let dir = key_dir("jwks");
    let rsa = Pair::rsa(&dir, "rsa");
    let ec = Pair::ec(&dir, "ec");
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, vec![rsa.jwk(Algorithm::RS256, "k1")]);
    let node = TestNode::start(Backend::Memory, |c| c.jwt_jwks = Some(jwks.clone())).await;

    let rs = sign(
        Algorithm::RS256,
        Some("k1"),
        &claims("alice"),
        &rsa.encoding(Algorithm::RS256),
    );
    assert_accepted(&node, &rs, "alice").await;
    let es = sign(
        Algorithm::ES256,
        Some("k2"),
        &claims("bob"),
        &ec.encoding(Algorithm::ES256),
    );
    assert_refused(&node, &es, "unknown kid").await;
    let no_kid = sign(
        Algorithm::RS256,
        None,
        &claims("alice"),
        &rsa.encoding(Algorithm::RS256),
    );
    assert_refused(&node, &no_kid, "no kid on a JWKS node").await;
    // The right key id with the wrong key's algorithm.
    let wrong = sign(
        Algorithm::ES256,
        Some("k1"),
        &claims("alice"),
        &ec.encoding(Algorithm::ES256),
    );
    assert_refused(&node, &wrong, "kid of an RSA key on an ES256 token").await;
    let confused = sign(
        Algorithm::HS256,
        Some("k1"),
        &claims("alice"),
        &EncodingKey::from_secret(&rsa.public_pem()),
    );
    assert_refused(&node, &confused, "HS256 with the JWKS key as secret").await;

    // The application rotates: k2 added, k1 removed.
    write_jwks(&jwks, vec![ec.jwk(Algorithm::ES256, "k2")]);
    eventually("the node reloads the JWKS", STEP, async || {
        let c = Client::connect(node.addr, &es).await.0;
        (c.connected["type"] == "connected").then_some(())
    })
    .await;
    assert_refused(&node, &rs, "kid removed from the JWKS").await;
    // A broken file keeps the keys read before.
    std::fs::write(&jwks, b"{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_accepted(&node, &es, "bob").await;
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_jwt_settings_stop_the_node_at_start() {
    use chat_node::{Config, Server};
    use clap::Parser;
    let dir = key_dir("bad");
    let not_a_key = dir.join("not-a-key.pem");
    std::fs::write(
        &not_a_key,
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let empty_jwks = dir.join("empty.json");
    std::fs::write(&empty_jwks, br#"{"keys":[]}"#).unwrap();
    for args in [
        vec!["--jwt-public-key", not_a_key.to_str().unwrap()],
        vec!["--jwt-jwks", empty_jwks.to_str().unwrap()],
        vec!["--jwt-secret", "too-short"],
    ] {
        let mut cfg = Config::parse_from(["chat-node"].into_iter().chain(args.iter().copied()));
        cfg.port = Some(0);
        cfg.health_port = 0;
        cfg.bind = "127.0.0.1".parse().unwrap();
        let err = Server::bind(cfg).await.err();
        assert!(
            matches!(err, Some(chat_node::Error::Config(_))),
            "{args:?}: {err:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_jti_is_kicked_on_every_node() {
    let c = Cluster::start_with_env(2, &common::cluster::amqp_url(), |_| {
        vec![("CHAT_JWT_SECRET", SECRET.to_owned())]
    })
    .await;
    let mut claims = claims("alice");
    claims["jti"] = "cross-node".into();
    let token = hs256(&claims);
    let mut on0 = Client::connect(c.addr(0), &token).await.expect_connected();
    let mut on1 = Client::connect(c.addr(1), &token).await.expect_connected();
    let r = common::http::Http::new()
        .delete(c.url(0, "/v1/tokens/jti:cross-node"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    for s in [&mut on0, &mut on1] {
        let (frames, code) = s.closed().await;
        assert_eq!(code, Some(4002), "{frames:?}");
    }
    // Refused on both nodes from now on.
    for i in 0..2 {
        let mut again = Client::connect(c.addr(i), &token).await.0;
        assert_eq!(again.connected["code"], "unauthorized", "node {i}");
        assert_eq!(again.closed().await.1, Some(4001), "node {i}");
    }
}
