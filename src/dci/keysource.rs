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

#[derive(Default)]
struct CacheEntry {
    /// The last set fetched, and when.
    jwks: Option<(Arc<Jwks>, Instant)>,
    /// When a kid miss last caused a refetch. Taken before fetching, so concurrent misses and a
    /// failed refetch count: at most one refetch a minute per URL.
    miss_refetch_at: Option<Instant>,
    /// When the last fetch failed, and why: no new attempt for a minute after it.
    failed_at: Option<(Instant, String)>,
}

impl CacheEntry {
    /// The cached set, when it may be used for a kid without fetching: fresh, and either holding
    /// the kid or refetched for a miss less than a minute ago.
    fn usable(&self, has_kid: &impl Fn(&Jwks) -> bool) -> Option<Arc<Jwks>> {
        let (jwks, fetched) = self.jwks.as_ref()?;
        let recent_miss = self
            .miss_refetch_at
            .is_some_and(|t| t.elapsed() < JWKS_MIN_REFETCH);
        (fetched.elapsed() < JWKS_TTL && (has_kid(jwks) || recent_miss)).then(|| jwks.clone())
    }
}

fn cache() -> &'static Mutex<HashMap<String, CacheEntry>> {
    static CACHE: OnceLock<Mutex<HashMap<String, CacheEntry>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// One fetch at a time per URL: the lock a fetcher holds while fetching.
fn fetch_gate(url: &str) -> Arc<Mutex<()>> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut gates = GATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    gates.entry(url.to_owned()).or_default().clone()
}

/// The set to use for `kid` (PROTOCOL §4): the cached one while it is fresh and holds the kid;
/// otherwise fetched, by one caller at a time per URL (the others wait and use its result).
/// A kid miss refetches at most once a minute; after a failed fetch none is tried for a minute.
fn cached_jwks(
    url: &str,
    kid: Option<&str>,
    fetch: impl FnOnce() -> Result<Jwks>,
) -> Result<Arc<Jwks>> {
    let has_kid = |j: &Jwks| kid.is_none_or(|k| j.get(k).is_some());
    let lock = || cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(jwks) = lock().get(url).and_then(|e| e.usable(&has_kid)) {
        return Ok(jwks);
    }
    let gate = fetch_gate(url);
    let _one_fetch_at_a_time = gate.lock().unwrap_or_else(|p| p.into_inner());
    {
        let mut map = lock();
        let entry = map.entry(url.to_owned()).or_default();
        if let Some(jwks) = entry.usable(&has_kid) {
            return Ok(jwks); // fetched while this caller waited
        }
        if entry
            .jwks
            .as_ref()
            .is_some_and(|(_, t)| t.elapsed() < JWKS_TTL)
        {
            entry.miss_refetch_at = Some(Instant::now());
        } else if let Some((at, why)) = &entry.failed_at {
            if at.elapsed() < JWKS_MIN_REFETCH {
                return Err(Error::Transport(format!(
                    "JWKS unavailable: the fetch {} s ago failed ({why})",
                    at.elapsed().as_secs()
                )));
            }
        }
    }
    let fetched = fetch();
    let mut map = lock();
    let entry = map.entry(url.to_owned()).or_default();
    match fetched {
        Ok(jwks) => {
            let jwks = Arc::new(jwks);
            entry.jwks = Some((jwks.clone(), Instant::now()));
            entry.failed_at = None;
            Ok(jwks)
        }
        Err(e) => {
            entry.failed_at = Some((Instant::now(), e.to_string()));
            Err(e)
        }
    }
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
    /// stale, and once more (rate-limited) when `kid` is not in the cached set (see
    /// [`cached_jwks`]).
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
                let jwks = cached_jwks(url, kid, || fetch_jwks(http, url, *allow_http))?;
                f(&Keys::Set(&jwks))
            }
        }
    }
}

/// Forgets cached JWKS documents (tests, key rotation by hand).
pub fn clear_cache() {
    cache().lock().unwrap_or_else(|p| p.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde_json::json;

    use super::*;

    fn set(kid: &str) -> Jwks {
        Jwks::from_value(&json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        }]}))
        .unwrap()
    }

    #[test]
    fn kid_misses_refetch_at_most_once_a_minute() {
        let url = "test://keysource/misses";
        let fetches = Cell::new(0);
        let fetch = |kid: &str| {
            let kid = kid.to_owned();
            let fetches = &fetches;
            move || {
                fetches.set(fetches.get() + 1);
                Ok(set(&kid))
            }
        };
        assert!(cached_jwks(url, Some("k1"), fetch("k1")).is_ok());
        assert!(cached_jwks(url, Some("k1"), fetch("k1")).is_ok());
        assert_eq!(fetches.get(), 1, "cached");
        // A miss refetches once; further misses within the minute use the cached set.
        let got = cached_jwks(url, Some("bogus-1"), fetch("k1")).unwrap();
        assert!(got.get("k1").is_some());
        for n in 2..50 {
            let got = cached_jwks(url, Some(&format!("bogus-{n}")), fetch("k1")).unwrap();
            assert!(got.get("k1").is_some());
        }
        assert_eq!(fetches.get(), 2);
    }

    #[test]
    fn a_failed_fetch_is_not_retried_within_the_minute() {
        let url = "test://keysource/failures";
        let fetches = Cell::new(0);
        let failing = || {
            fetches.set(fetches.get() + 1);
            Err(Error::Transport("connection refused".into()))
        };
        assert!(matches!(
            cached_jwks(url, Some("k1"), failing),
            Err(Error::Transport(_))
        ));
        for _ in 0..10 {
            let err = cached_jwks(url, Some("k1"), failing).unwrap_err();
            assert!(err.to_string().contains("connection refused"), "{err}");
        }
        assert_eq!(fetches.get(), 1);

        // A failed miss refetch counts as the minute's refetch.
        let url = "test://keysource/failed-miss";
        assert!(cached_jwks(url, Some("k1"), || Ok(set("k1"))).is_ok());
        fetches.set(0);
        assert!(cached_jwks(url, Some("k2"), failing).is_err());
        let got = cached_jwks(url, Some("k3"), failing).unwrap();
        assert!(got.get("k1").is_some() && fetches.get() == 1);
    }
}
