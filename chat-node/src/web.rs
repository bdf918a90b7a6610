//! The web client at `/`: a handful of static files built into the binary
//! (`chat-node/web/`), served with their type, a revalidation cache policy
//! and a Content-Security-Policy that lets the page run only its own
//! scripts. Nothing is fetched from elsewhere at run time; message media
//! load from the URLs their messages name.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file of the web client. `index.html` names the others by these
/// paths.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/chat.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/style.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/favicon.svg"),
    },
];

/// Scripts and styles from this origin only, no inline code, no plugins,
/// no framing. WebSockets may go to any node (`/v1/route` may name another
/// host); message media may come from any http(s) URL, as messages carry
/// them.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' http: https: data:; media-src 'self' http: https:; \
connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A strong validator per file, computed once: the files change only with
/// the binary.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
        .collect()
});

/// The routes of the web client.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().enumerate().fold(Router::new(), |r, (i, a)| {
        r.route(a.path, get(move |h: HeaderMap| async move { serve(i, &h) }))
    })
}

fn serve(i: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut headers = HeaderMap::new();
    // `no-cache`: reuse only after revalidating, so a new binary's files
    // are picked up at once (the names carry no hash).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_only_embedded_files() {
        let index = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        for needle in ["src=\"/", "href=\"/"] {
            for part in index.split(needle).skip(1) {
                let path = format!("/{}", part.split('"').next().unwrap_or_default());
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "index.html names {path}, which is not embedded"
                );
            }
        }
    }

    #[test]
    fn modules_import_only_embedded_files() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("utf-8");
            for part in text.split("from './").skip(1) {
                let path = format!("/{}", part.split('\'').next().unwrap_or_default());
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{} imports {path}, which is not embedded",
                    a.path
                );
            }
        }
    }

    #[test]
    fn a_matching_validator_answers_not_modified() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&ETAGS[1]).unwrap(),
        );
        assert_eq!(serve(1, &h).status(), StatusCode::NOT_MODIFIED);
        let r = serve(1, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
