//! JWT connect tokens (PROTOCOL.md 1.1, "JWT connect tokens"): tokens the
//! application's backend signs itself, checked here without a store call.
//!
//! Each key accepts exactly one algorithm, taken from the key and never
//! from the token: the HS256 secret only HS256, an RSA public key only
//! RS256, a P-256 key only ES256. So `alg: none` (not even parsed) and
//! algorithm confusion (an HS256 token "signed" with the RSA public key as
//! its secret) find no key and are refused like any bad signature.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::protocol::{valid_platform, valid_user_id};

/// Clock difference between the application's backend and the node that
/// `exp` and `nbf` forgive, in seconds.
const LEEWAY_S: u64 = 5;
/// A JWKS file is looked at (its size and modification time) at most this
/// often; a change is read at the next connect after that.
const JWKS_CHECK: Duration = Duration::from_secs(1);
/// Most bytes of a JWKS or PEM file read.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;
/// Most bytes of a `jti`: it names a Redis key (hashed) and an HTTP path.
pub const MAX_JTI_BYTES: usize = 256;
/// `platform` of a JWT session without one.
const DEFAULT_PLATFORM: &str = "jwt";

/// What the node was told about JWTs (all optional; none means opaque
/// tokens only).
#[derive(Clone, Default)]
pub struct JwtSettings {
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// PEM file of an RSA or P-256 public key.
    pub public_key: Option<PathBuf>,
    /// JWKS file, re-read when it changes.
    pub jwks: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("JwtSettings")
            .field("secret", &self.secret.as_ref().map(|_| "[set]"))
            .field("public_key", &self.public_key)
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtSettings {
    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        self.secret.is_some() || self.public_key.is_some() || self.jwks.is_some()
    }
}

/// A verified JWT: who it is for, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    pub user: String,
    pub platform: String,
    /// `exp`, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    pub jti: Option<String>,
}

/// Why a JWT was refused (the client only ever sees `unauthorized`; this
/// is for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefusal {
    #[error("not a JWT this node accepts: {0}")]
    Malformed(String),
    #[error("no key for algorithm {0:?}")]
    NoKeyForAlgorithm(Algorithm),
    #[error("no key with this kid")]
    UnknownKid,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("claim {0} is missing or invalid")]
    Claim(&'static str),
}

/// Claims read beyond those `jsonwebtoken` validates.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    platform: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
}

/// One key and the one algorithm it accepts.
#[derive(Clone)]
struct Key {
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys of a JWKS file, with what identified the file version read.
struct Jwks {
    path: PathBuf,
    stamp: Option<(u64, SystemTime)>,
    checked: Instant,
    keys: Vec<(String, Key)>,
}

/// Checks JWT connect tokens against the configured keys.
pub struct JwtVerifier {
    hmac: Option<Key>,
    public: Option<Key>,
    jwks: Option<Mutex<Jwks>>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hmac", &self.hmac.is_some())
            .field("public", &self.public.as_ref().map(|k| k.alg))
            .field("jwks", &self.jwks.is_some())
            .finish()
    }
}

/// Whether `token` has the shape of a JWT (three base64url parts), as
/// opposed to an opaque `<platform>.<secret>` token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

impl JwtVerifier {
    /// Reads the keys; a key that cannot be read or used is an error here,
    /// at start, never a surprise at the first connect.
    pub fn new(s: &JwtSettings) -> Result<Self, String> {
        let hmac = match &s.secret {
            Some(secret) if secret.len() < 32 => {
                return Err("the HS256 secret must be at least 32 bytes".into());
            }
            Some(secret) => Some(Key {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            }),
            None => None,
        };
        let public = match &s.public_key {
            Some(path) => Some(
                public_key_from_pem(&read_key_file(path)?)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            ),
            None => None,
        };
        let jwks = match &s.jwks {
            Some(path) => {
                let (stamp, keys) = load_jwks(path)?;
                Some(Mutex::new(Jwks {
                    path: path.clone(),
                    stamp,
                    checked: Instant::now(),
                    keys,
                }))
            }
            None => None,
        };
        Ok(JwtVerifier {
            hmac,
            public,
            jwks,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
        })
    }

    /// Verifies a token at the current time.
    pub fn verify(&self, token: &str) -> Result<JwtIdentity, JwtRefusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtRefusal::Malformed(e.to_string()))?;
        let key = self.key_for(header.alg, header.kid.as_deref())?;
        let mut v = Validation::new(key.alg);
        v.leeway = LEEWAY_S;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) if c == "sub" => {
                    JwtRefusal::Claim("sub")
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) if c == "exp" => {
                    JwtRefusal::Claim("exp")
                }
                _ => JwtRefusal::Invalid(e.to_string()),
            })?;
        identity(data.claims)
    }

    /// The key for a token's header: by `kid` in the JWKS when it names
    /// one, else the configured key of that algorithm.
    fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<Key, JwtRefusal> {
        if let (Some(jwks), Some(kid)) = (&self.jwks, kid) {
            let mut j = jwks.lock().unwrap_or_else(|p| p.into_inner());
            j.refresh();
            return match j.keys.iter().find(|(k, _)| k == kid) {
                Some((_, key)) if key.alg == alg => Ok(key.clone()),
                Some(_) => Err(JwtRefusal::NoKeyForAlgorithm(alg)),
                None => Err(JwtRefusal::UnknownKid),
            };
        }
        let fixed = [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .find(|k| k.alg == alg);
        match fixed {
            Some(k) => Ok(k.clone()),
            // A JWKS-only node needs a kid.
            None if self.jwks.is_some() && self.hmac.is_none() && self.public.is_none() => {
                Err(JwtRefusal::UnknownKid)
            }
            None => Err(JwtRefusal::NoKeyForAlgorithm(alg)),
        }
    }
}

/// The identity of validated claims, or why the claims do not make one.
fn identity(c: Claims) -> Result<JwtIdentity, JwtRefusal> {
    let user = match c.sub {
        Some(serde_json::Value::String(s)) if valid_user_id(&s) => s,
        _ => return Err(JwtRefusal::Claim("sub")),
    };
    let exp = c
        .exp
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or(JwtRefusal::Claim("exp"))?;
    let platform = match c.platform {
        None => DEFAULT_PLATFORM.to_owned(),
        Some(serde_json::Value::String(p)) if valid_platform(&p) => p,
        Some(_) => return Err(JwtRefusal::Claim("platform")),
    };
    let jti = match c.jti {
        None => None,
        Some(serde_json::Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_BYTES => Some(j),
        Some(_) => return Err(JwtRefusal::Claim("jti")),
    };
    Ok(JwtIdentity {
        user,
        platform,
        expires_at_ms: exp.saturating_mul(1000),
        jti,
    })
}

impl Jwks {
    /// Re-reads the file when its size or modification time changed; a
    /// file that no longer parses keeps the keys read before.
    fn refresh(&mut self) {
        if self.checked.elapsed() < JWKS_CHECK {
            return;
        }
        self.checked = Instant::now();
        let stamp = file_stamp(&self.path);
        if stamp == self.stamp {
            return;
        }
        match load_jwks(&self.path) {
            Ok((stamp, keys)) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS reloaded");
                self.stamp = stamp;
                self.keys = keys;
            }
            Err(e) => {
                // Remember the stamp: the warning comes once per change.
                self.stamp = stamp;
                tracing::warn!(error = %e, "JWKS file changed but cannot be used; keeping the keys read before");
            }
        }
    }
}

fn file_stamp(path: &std::path::Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn read_key_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{}: {len} bytes, more than a key file may hold ({MAX_KEY_FILE_BYTES})",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A public key PEM: RSA (RS256) or P-256 (ES256), told apart by trying.
fn public_key_from_pem(pem: &[u8]) -> Result<Key, String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(Key {
            alg: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(Key {
            alg: Algorithm::ES256,
            key,
        });
    }
    Err("not an RSA or P-256 public key in PEM".into())
}

type LoadedJwks = (Option<(u64, SystemTime)>, Vec<(String, Key)>);

/// The RSA and P-256 keys of a JWKS file that have a `kid`.
fn load_jwks(path: &std::path::Path) -> Result<LoadedJwks, String> {
    let stamp = file_stamp(path);
    let bytes = read_key_file(path)?;
    let set: JwkSet = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            // Symmetric keys, other curves and algorithms: not for us.
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| format!("{}: key {kid}: {e}", path.display()))?;
        keys.push((kid, Key { alg, key }));
    }
    if keys.is_empty() {
        return Err(format!(
            "{}: no RSA (RS256) or P-256 (ES256) key with a kid",
            path.display()
        ));
    }
    Ok((stamp, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_part_tokens_are_taken_for_jwts() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("ios.5f0c"));
        assert!(!looks_like_jwt("a.b.c.d"));
    }

    #[test]
    fn short_secrets_and_unreadable_keys_are_refused_at_start() {
        let short = JwtSettings {
            secret: Some("short".into()),
            ..Default::default()
        };
        assert!(JwtVerifier::new(&short).is_err());
        let missing = JwtSettings {
            public_key: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        assert!(JwtVerifier::new(&missing).is_err());
    }

    #[test]
    fn claims_make_an_identity_only_when_valid() {
        let c = |v: serde_json::Value| identity(serde_json::from_value(v).unwrap());
        let ok = c(serde_json::json!({"sub":"alice","exp":100}));
        assert_eq!(
            ok,
            Ok(JwtIdentity {
                user: "alice".into(),
                platform: "jwt".into(),
                expires_at_ms: 100_000,
                jti: None
            })
        );
        assert_eq!(
            c(serde_json::json!({"sub":"a:b","exp":100})),
            Err(JwtRefusal::Claim("sub"))
        );
        assert_eq!(
            c(serde_json::json!({"sub":7,"exp":100})),
            Err(JwtRefusal::Claim("sub"))
        );
        assert_eq!(
            c(serde_json::json!({"sub":"a","exp":100,"platform":"Bad!"})),
            Err(JwtRefusal::Claim("platform"))
        );
        assert_eq!(
            c(serde_json::json!({"sub":"a","exp":100,"jti":""})),
            Err(JwtRefusal::Claim("jti"))
        );
    }
}
