//! Where a registry's verification keys come from (PROTOCOL §4): a configured key, a JWKS, or a
//! JWKS URL fetched over https, cached with a TTL and refetched on a kid miss at most once a
//! minute per URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::http::{describe, read_limited, HttpSettings, LazyClient, MAX_REDIRECTS};
use super::jwk::{Jwks, PublicKeys, MAX_JWKS_BYTES};
use super::keys::VerifyingKey;
use super::signature::Keys;

pub const JWKS_TIMEOUT: Duration = Duration::from_secs(10);
pub const JWKS_TTL: Duration = Duration::from_secs(3600);
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(60);

/// Checks a JWKS URL: https, or http only when explicitly allowed (loopback, tests).
pub fn check_jwks_url(url: &str, allow_http: bool) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| Error::Config("JWKS URL is not a valid URL".into()))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => Err(Error::Config(
            "JWKS URL must be https (allow plain http explicitly for loopback or tests)".into(),
        )),
        other => Err(Error::Config(format!(
            "JWKS URL scheme '{other}' is not supported"
        ))),
    }
}

/// Fetches a JWKS: `GET url`, ≤ 1 MiB, at most [`MAX_REDIRECTS`] redirects, each to the same
/// scheme, host and port; a redirect elsewhere is not followed and fails the fetch.
pub fn fetch_jwks(http: &LazyClient, url: &str, allow_http: bool) -> Result<Jwks> {
    check_jwks_url(url, allow_http)?;
    let resp = http
        .get()?
        .get(url)
        .header("Accept", "application/json")
        .send()
        .map_err(|e| describe(e, "JWKS fetch"))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(Error::HttpStatus {
            status: status.as_u16(),
            code: None,
            message: format!(
                "JWKS fetch redirected: only up to {MAX_REDIRECTS} redirects to the same \
                 scheme, host and port are followed"
            ),
        });
    }
    if !status.is_success() {
        return Err(Error::HttpStatus {
            status: status.as_u16(),
            code: None,
            message: "JWKS fetch failed".into(),
        });
    }
    let body = read_limited(resp, MAX_JWKS_BYTES, "JWKS fetch")?;
    Jwks::from_slice(&body)
}

/// A fresh client for JWKS fetches (10 s timeout, same-origin redirects).
pub fn jwks_http(verify_tls: bool, ca_bundle: Option<Vec<u8>>) -> Result<LazyClient> {
    LazyClient::new(HttpSettings {
        timeout: JWKS_TIMEOUT,
        connect_timeout: JWKS_TIMEOUT,
        verify_tls,
        ca_bundle,
        same_origin_redirects: true,
        pool_size: 2,
    })
}

struct CacheEntry {
    jwks: Arc<Jwks>,
    fetched_at: Instant,
    /// When a kid miss last caused a refetch (rate-limited to once a minute per URL).
    miss_refetch_at: Option<Instant>,
}

fn cache() -> &'static Mutex<HashMap<String, CacheEntry>> {
    static CACHE: OnceLock<Mutex<HashMap<String, CacheEntry>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The registry's verification keys.
pub enum RegistryKeys {
    /// Not configured: answers cannot be verified.
    None,
    Key(VerifyingKey),
    Set(Arc<Jwks>),
    Url {
        url: String,
        allow_http: bool,
        http: LazyClient,
    },
}

impl From<PublicKeys> for RegistryKeys {
    fn from(keys: PublicKeys) -> Self {
        match keys {
            PublicKeys::One(jwk) => RegistryKeys::Key(jwk.key),
            PublicKeys::Set(jwks) => RegistryKeys::Set(jwks),
        }
    }
}

impl RegistryKeys {
    pub fn is_configured(&self) -> bool {
        !matches!(self, RegistryKeys::None)
    }

    /// Calls `f` with the keys for `kid`; for a URL source, fetches the set when it is missing or
    /// stale, and once more (rate-limited) when `kid` is not in the cached set.
    pub fn with_keys<T>(&self, kid: Option<&str>, f: impl Fn(&Keys<'_>) -> Result<T>) -> Result<T> {
        match self {
            RegistryKeys::None => Err(Error::Config("no registry keys configured".into())),
            RegistryKeys::Key(k) => f(&Keys::One(k)),
            RegistryKeys::Set(s) => f(&Keys::Set(s)),
            RegistryKeys::Url {
                url,
                allow_http,
                http,
            } => {
                let has_kid = |j: &Jwks| kid.is_none_or(|k| j.get(k).is_some());
                let cached = {
                    let map = cache().lock().unwrap_or_else(|p| p.into_inner());
                    map.get(url)
                        .map(|e| (e.jwks.clone(), e.fetched_at, e.miss_refetch_at))
                };
                let (jwks, miss_refetch_at) = match cached {
                    Some((jwks, fetched, _)) if fetched.elapsed() < JWKS_TTL && has_kid(&jwks) => {
                        (jwks, None)
                    }
                    // A kid miss: refetch unless one already did within the minute.
                    Some((jwks, fetched, Some(last)))
                        if fetched.elapsed() < JWKS_TTL && last.elapsed() < JWKS_MIN_REFETCH =>
                    {
                        (jwks, None)
                    }
                    stale_or_missing => {
                        let miss = stale_or_missing
                            .as_ref()
                            .is_some_and(|(_, fetched, _)| fetched.elapsed() < JWKS_TTL);
                        let fresh = Arc::new(fetch_jwks(http, url, *allow_http)?);
                        let now = Instant::now();
                        let previous = stale_or_missing.and_then(|(_, _, last)| last);
                        (fresh, Some((now, if miss { Some(now) } else { previous })))
                    }
                };
                if let Some((fetched_at, miss_refetch_at)) = miss_refetch_at {
                    let mut map = cache().lock().unwrap_or_else(|p| p.into_inner());
                    map.insert(
                        url.clone(),
                        CacheEntry {
                            jwks: jwks.clone(),
                            fetched_at,
                            miss_refetch_at,
                        },
                    );
                }
                f(&Keys::Set(&jwks))
            }
        }
    }
}

/// Forgets cached JWKS documents (tests, key rotation by hand).
pub fn clear_cache() {
    cache().lock().unwrap_or_else(|p| p.into_inner()).clear();
}
