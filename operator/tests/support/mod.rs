//! The API double (kube-fake-client) as the tests use it: with the API
//! server's JSON-patch semantics, serving namespaces, and served over HTTP
//! for the binary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;

use http_body_util::BodyExt;
use kube::Client;
use kube_fake_client::{PatchType, interceptor};
use parley_operator::crd::ChatCluster;

/// The Kubernetes API server's JSON-patch `test` treats a missing path as
/// `null` (kube's finalizer helper relies on it to add the first
/// finalizer); the `json-patch` crate inside the API double refuses it.
/// This gives ChatCluster JSON patches the API server's semantics: such a
/// test passes, every other operation is applied by the crate as usual.
pub fn api_server_json_patch() -> interceptor::Funcs {
    interceptor::Funcs::new().patch(|ctx| json_patch_semantics(&ctx))
}

/// The patch interceptor of [`api_server_json_patch`], for tests that add
/// interceptors of their own.
pub fn json_patch_semantics(
    ctx: &interceptor::PatchContext,
) -> kube_fake_client::Result<Option<serde_json::Value>> {
    {
        let Some(ops) = ctx.patch.as_array() else {
            return Ok(None);
        };
        if ctx.patch_type != PatchType::JsonPatch {
            return Ok(None);
        }
        let Ok(stored) = ctx.client.get::<ChatCluster>(ctx.namespace, ctx.name) else {
            return Ok(None);
        };
        let mut doc = serde_json::to_value(&stored)?;
        let missing_is_null = |op: &serde_json::Value| {
            op["op"] == "test"
                && op["value"].is_null()
                && op["path"]
                    .as_str()
                    .is_some_and(|p| doc.pointer(p).is_none())
        };
        if !ops.iter().any(missing_is_null) {
            return Ok(None);
        }
        let kept: Vec<serde_json::Value> = ops
            .iter()
            .filter(|op| !missing_is_null(op))
            .cloned()
            .collect();
        let patch: json_patch::Patch = serde_json::from_value(kept.into())?;
        json_patch::patch(&mut doc, &patch)?;
        let patched: ChatCluster = serde_json::from_value(doc)?;
        let updated = ctx
            .client
            .update(ctx.namespace, &patched, &Default::default())?;
        Ok(Some(serde_json::to_value(updated)?))
    }
}

/// Serves `client` (the API double) over HTTP/1 on a free port.
#[allow(dead_code)] // not every test binary serves HTTP
pub async fn serve(client: Client) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let client = client.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let client = client.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = match body.collect().await {
                                Ok(b) => b.to_bytes(),
                                Err(e) => return Err(std::io::Error::other(e.to_string())),
                            };
                            let req =
                                hyper::Request::from_parts(parts, kube::client::Body::from(bytes));
                            client
                                .send(req)
                                .await
                                .map_err(|e| std::io::Error::other(e.to_string()))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    addr
}

/// Namespaces the double serves at `GET /api/v1/namespaces/{name}`: the
/// fake crate's path parser cannot take that path (it reads `namespaces`
/// as the start of a namespaced path). The test sets what they hold.
#[derive(Clone, Default)]
#[allow(dead_code)] // not every test binary uses namespaces
pub struct Namespaces(Arc<Mutex<BTreeMap<String, Namespace>>>);

#[allow(dead_code)]
impl Namespaces {
    /// A namespace `name` that exists; `deleting`: it is being deleted.
    pub fn set(&self, name: &str, deleting: bool) {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then(|| {
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::now(),
                    )
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), ns);
    }

    fn get(&self, name: &str) -> Option<Namespace> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// `inner` (the double) with `namespaces` served in front of it.
#[allow(dead_code)]
pub fn with_namespaces(inner: Client, namespaces: Namespaces) -> Client {
    let svc = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
        let inner = inner.clone();
        let namespaces = namespaces.clone();
        async move {
            let name = req
                .uri()
                .path()
                .strip_prefix("/api/v1/namespaces/")
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .map(str::to_owned);
            match name {
                Some(name) if req.method() == hyper::Method::GET => {
                    let (code, body) = match namespaces.get(&name) {
                        Some(ns) => (200, serde_json::to_vec(&ns).unwrap_or_default()),
                        None => (
                            404,
                            serde_json::to_vec(&serde_json::json!({
                                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "message": format!("namespaces \"{name}\" not found"),
                                "reason": "NotFound", "code": 404
                            }))
                            .unwrap_or_default(),
                        ),
                    };
                    hyper::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body))
                        .map_err(|e| kube::Error::Service(Box::new(e)))
                }
                _ => inner.send(req).await,
            }
        }
    });
    Client::new(svc, "default")
}
