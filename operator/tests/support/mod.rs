//! The API double (kube-fake-client) as the tests use it: with the API
//! server's JSON-patch semantics, and served over HTTP for the binary.

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
    interceptor::Funcs::new().patch(|ctx| {
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
    })
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
