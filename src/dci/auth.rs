//! Authentication (PROTOCOL §5): none, static bearer, or OAuth2 client credentials with an
//! in-process token cache per (token URL, client id, digest of the secret, scope, registry base
//! URL), refreshed 60 s early, one fetch at a time per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::error::{Error, Redactor, Result};
use super::http::{describe, read_limited, Secret};

/// Where OAuth2 client credentials travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialLocation {
    /// Form body (RFC 6749 §2.3.1 alternative; the default).
    Body,
    /// HTTP Basic (RFC 6749 §2.3.1).
    Basic,
    /// Query parameters (an OpenCRVS workaround).
    Query,
}

impl CredentialLocation {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "body" => Ok(CredentialLocation::Body),
            "basic" => Ok(CredentialLocation::Basic),
            "query" => Ok(CredentialLocation::Query),
            other => Err(Error::Config(format!(
                "credentials_location must be 'body', 'basic' or 'query', not '{other}'"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
    pub location: CredentialLocation,
}

#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(Secret),
    OAuth2(OAuth2),
}

/// Refresh this long before the token expires.
pub const REFRESH_EARLY: Duration = Duration::from_secs(60);
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// A token fetched by [`OAuth2::fetch_fresh`], with what its answer said about it.
#[derive(Debug)]
pub struct TokenInfo {
    pub token: Secret,
    /// The answer's `expires_in` (None when it gave none: read as one hour).
    pub expires_in: Option<f64>,
    pub lifetime: Duration,
    /// The answer's `scope`, when it gave one.
    pub scope: Option<String>,
    /// The answer's `token_type`, when it gave one.
    pub token_type: Option<String>,
}

struct CachedToken {
    token: Secret,
    expires_at: Instant,
}

type Slot = Arc<Mutex<Option<CachedToken>>>;

/// (token URL, client id, digest of the client secret, scope, registry base URL): a client whose
/// secret is wrong never rides on another client's token, and a token goes only to the registry
/// it was fetched for. The secret itself is never part of the key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    token_url: String,
    client_id: String,
    secret_digest: [u8; 32],
    scope: Option<String>,
    registry: String,
}

fn cache() -> &'static Mutex<HashMap<CacheKey, Slot>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Slot>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// SHA-256 of the secret under a random per-process salt: equal secrets give equal digests in
/// this process, and a digest found in a memory dump cannot be checked against guesses offline.
fn secret_digest(secret: &Secret) -> [u8; 32] {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut salt = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        salt
    });
    let mut hash = Sha256::new();
    hash.update(salt);
    hash.update(secret.expose().as_bytes());
    hash.finalize().into()
}

impl OAuth2 {
    fn key(&self, registry: &str) -> CacheKey {
        CacheKey {
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            secret_digest: secret_digest(&self.client_secret),
            scope: self.scope.clone(),
            registry: registry.to_owned(),
        }
    }

    fn slot(&self, key: &CacheKey) -> Slot {
        let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_default().clone()
    }

    /// A valid token for calls to the registry at `registry` (its base URL): from the cache, or
    /// fetched (one fetch at a time per cache key).
    pub fn token(&self, http: &Client, registry: &str) -> Result<Secret> {
        let key = self.key(registry);
        let slot = self.slot(&key);
        let mut cached = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cached.as_ref() {
            if Instant::now() + REFRESH_EARLY < t.expires_at {
                return Ok(t.token.clone());
            }
        }
        let (token, lifetime) = match self.fetch(http) {
            Ok(fetched) => (fetched.token, fetched.lifetime),
            Err(e) => {
                if cached.is_none() {
                    // Credentials that never got a token (a wrong secret) leave nothing behind.
                    let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
                    if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                        map.remove(&key);
                    }
                }
                return Err(e);
            }
        };
        *cached = Some(CachedToken {
            token: token.clone(),
            expires_at: Instant::now() + lifetime,
        });
        Ok(token)
    }

    /// Drops the cached token for `registry` if it is still `stale` (a resource answered 401
    /// with it).
    pub fn invalidate(&self, stale: &Secret, registry: &str) {
        let slot = self.slot(&self.key(registry));
        let mut cached = slot.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|t| &t.token == stale) {
            *cached = None;
        }
    }

    /// Fetches a new token, bypassing and leaving alone the cache (`doctor`).
    pub fn fetch_fresh(&self, http: &Client) -> Result<TokenInfo> {
        self.fetch(http)
    }

    fn fetch(&self, http: &Client) -> Result<TokenInfo> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let creds = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let mut req = http.post(&self.token_url);
        match self.location {
            CredentialLocation::Body => form.extend(creds),
            CredentialLocation::Basic => {
                req = req.basic_auth(&self.client_id, Some(self.client_secret.expose()))
            }
            CredentialLocation::Query => req = req.query(&creds),
        }
        let resp = req
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .map_err(|e| describe(e, "token request"))?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, MAX_TOKEN_ANSWER, "token request")?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            // The endpoint may quote the credentials back: masked before anything keeps them.
            let peer = Redactor::new()
                .with_secret(self.client_secret.expose())
                .with_basic(&self.client_id, self.client_secret.expose());
            let code = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(Value::as_str)
                .map(|s| peer.text(s).chars().take(100).collect::<String>());
            return Err(Error::Auth {
                status: Some(status),
                message: format!(
                    "token endpoint refused the client credentials of client '{}' (HTTP {status}{})",
                    self.client_id,
                    code.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
                ),
                code,
            });
        }
        let json = json.ok_or_else(|| Error::Protocol("token answer is not JSON".into()))?;
        let token = json
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Protocol("token answer has no access_token".into()))?;
        let text = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .map(|s| s.chars().take(200).collect::<String>())
        };
        let given = !matches!(json.get("expires_in"), None | Some(Value::Null));
        let lifetime = match json.get("expires_in") {
            None | Some(Value::Null) => 3600.0,
            Some(Value::Number(n)) => n.as_str().parse::<f64>().unwrap_or(-1.0),
            Some(Value::String(s)) => s.trim().parse::<f64>().unwrap_or(-1.0),
            Some(_) => -1.0,
        };
        if !(lifetime.is_finite() && lifetime >= 0.0) {
            return Err(Error::Protocol(
                "token answer has an unreadable expires_in".into(),
            ));
        }
        Ok(TokenInfo {
            token: Secret::new(token),
            expires_in: given.then_some(lifetime),
            lifetime: Duration::from_secs_f64(lifetime.min(365.0 * 86400.0)),
            scope: text("scope"),
            token_type: text("token_type"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(secret: &str) -> OAuth2 {
        OAuth2 {
            token_url: "https://auth.example/token".into(),
            client_id: "spp".into(),
            client_secret: Secret::new(secret),
            scope: None,
            location: CredentialLocation::Body,
        }
    }

    #[test]
    fn cache_key_separates_secrets_and_registries_and_never_holds_the_secret() {
        let secret = "s3cr3t-value-s3cr3t-value";
        let key = oauth(secret).key("https://ibr.example");
        assert!(key == oauth(secret).key("https://ibr.example"));
        assert!(key != oauth("another-secret").key("https://ibr.example"));
        assert!(key != oauth(secret).key("https://other.example"));
        let held = [
            key.token_url.as_bytes(),
            key.client_id.as_bytes(),
            key.registry.as_bytes(),
            &key.secret_digest,
        ]
        .concat();
        assert!(!held
            .windows(6)
            .any(|w| secret.as_bytes().windows(6).any(|s| s == w)));
    }
}
