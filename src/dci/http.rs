//! HTTP plumbing shared by the client and the JWKS fetcher: a lazily built, fork-aware pooled
//! client, bounded body reads, and error classification that never leaks URLs or secrets.

use std::fmt;
use std::io::Read as _;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use zeroize::Zeroizing;

use super::error::{Error, Result};

/// A secret string (client secret, token): never printed by `Debug`, zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// TLS and timeout settings of one pooled client.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub verify_tls: bool,
    /// PEM of extra CA certificates to trust.
    pub ca_bundle: Option<Vec<u8>>,
    /// Follow no redirect (API calls) or only same-origin ones (JWKS).
    pub same_origin_redirects: bool,
    pub pool_size: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            verify_tls: true,
            ca_bundle: None,
            same_origin_redirects: false,
            pool_size: 32,
        }
    }
}

/// A pooled keep-alive client created on first use — nothing at import time — and created again
/// in a forked child (Odoo prefork workers), whose copy of the parent's runtime thread is gone.
pub struct LazyClient {
    settings: HttpSettings,
    slot: Mutex<Option<(u32, Client)>>,
}

impl LazyClient {
    pub fn new(settings: HttpSettings) -> Result<Self> {
        if let Some(pem) = &settings.ca_bundle {
            ca_certificates(pem)?;
        }
        Ok(LazyClient {
            settings,
            slot: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    pub fn get(&self) -> Result<Client> {
        let pid = std::process::id();
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, client)) = slot.as_ref() {
            if *owner == pid {
                return Ok(client.clone());
            }
            // Forked: the parent's client belongs to a runtime thread that does not exist here.
            // Leak it rather than run its destructor, which would wait for that thread.
            if let Some((_, stale)) = slot.take() {
                std::mem::forget(stale);
            }
        }
        let client = build_client(&self.settings)?;
        *slot = Some((pid, client.clone()));
        Ok(client)
    }
}

/// The certificates of a CA bundle; a bundle with none is a configuration error.
fn ca_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>> {
    match reqwest::Certificate::from_pem_bundle(pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(Error::Config(
            "ca_bundle is not a PEM certificate bundle".into(),
        )),
    }
}

/// Most redirects followed from one URL (same-origin redirects only).
pub const MAX_REDIRECTS: usize = 3;

/// Scheme, host and port (the default port of the scheme when none is written): an https URL
/// is never the same origin as an http one. A target carrying credentials is never followed.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && b.username().is_empty()
        && b.password().is_none()
}

fn build_client(s: &HttpSettings) -> Result<Client> {
    let redirect = if s.same_origin_redirects {
        reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| same_origin(first, attempt.url()));
            // `previous` holds the URLs requested so far, the first one included.
            if same && attempt.previous().len() <= MAX_REDIRECTS {
                attempt.follow()
            } else {
                attempt.stop()
            }
        })
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut b = Client::builder()
        .timeout(s.timeout)
        .connect_timeout(s.connect_timeout)
        .pool_max_idle_per_host(s.pool_size)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .redirect(redirect)
        .user_agent(concat!("spp-dci-client-ibr/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(!s.verify_tls);
    if let Some(pem) = &s.ca_bundle {
        for cert in ca_certificates(pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {}", e.without_url())))
}

fn root_cause_text(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Classifies a reqwest error, with its cause chain but without its URL (which may carry
/// credentials in its query).
pub fn describe(err: reqwest::Error, what: &str) -> Error {
    let is_timeout = err.is_timeout();
    let is_connect = err.is_connect();
    let err = err.without_url();
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let chain = root_cause_text(&parts.join(": "));
    if is_timeout {
        Error::Timeout(format!("{what} timed out"))
    } else if is_connect {
        Error::Transport(format!("{what}: cannot connect: {chain}"))
    } else {
        Error::Transport(format!("{what}: {chain}"))
    }
}

/// Reads a response body, refusing more than `limit` bytes.
pub fn read_limited(resp: Response, limit: usize, what: &str) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Error::Protocol(format!(
            "{what} answer is larger than {limit} bytes"
        )));
    }
    if resp.content_length().is_some() {
        // Announced and within the limit: take the whole body in one hand-over from the
        // runtime thread instead of one per chunk (a stream that runs longer than announced
        // is an error in hyper).
        return resp
            .bytes()
            .map(|b| b.to_vec())
            .map_err(|e| describe(e, what));
    }
    let mut body = Vec::new();
    resp.take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Error::Timeout(format!("{what} timed out reading the answer"))
            } else {
                Error::Transport(format!("{what}: answer interrupted ({})", e.kind()))
            }
        })?;
    if body.len() > limit {
        return Err(Error::Protocol(format!(
            "{what} answer is larger than {limit} bytes"
        )));
    }
    Ok(body)
}
