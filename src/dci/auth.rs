//! Authentication (PROTOCOL §5): none, static bearer, or OAuth2 client credentials with an
//! in-process token cache per (token URL, client id, scope), refreshed 60 s early, one fetch at a
//! time per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

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

struct CachedToken {
    token: Secret,
    expires_at: Instant,
}

type Slot = Arc<Mutex<Option<CachedToken>>>;

/// (token URL, client id, scope).
type CacheKey = (String, String, Option<String>);

fn cache() -> &'static Mutex<HashMap<CacheKey, Slot>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Slot>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl OAuth2 {
    fn slot(&self) -> Slot {
        let key = (
            self.token_url.clone(),
            self.client_id.clone(),
            self.scope.clone(),
        );
        let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_default().clone()
    }

    /// A valid token: from the cache, or fetched (one fetch at a time per cache key).
    pub fn token(&self, http: &Client) -> Result<Secret> {
        let slot = self.slot();
        let mut cached = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cached.as_ref() {
            if Instant::now() + REFRESH_EARLY < t.expires_at {
                return Ok(t.token.clone());
            }
        }
        let (token, lifetime) = self.fetch(http)?;
        *cached = Some(CachedToken {
            token: token.clone(),
            expires_at: Instant::now() + lifetime,
        });
        Ok(token)
    }

    /// Drops the cached token if it is still `stale` (a resource answered 401 with it).
    pub fn invalidate(&self, stale: &Secret) {
        let slot = self.slot();
        let mut cached = slot.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|t| &t.token == stale) {
            *cached = None;
        }
    }

    fn fetch(&self, http: &Client) -> Result<(Secret, Duration)> {
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
        Ok((
            Secret::new(token),
            Duration::from_secs_f64(lifetime.min(365.0 * 86400.0)),
        ))
    }
}
