//! `doctor`: the first hour with a real registry. Runs, against a configured client, every step
//! a first call depends on and says for each what was found and what to change: base URL
//! reachable, TLS verified, token obtained, the registry's JWKS fetched, our public key
//! published, clock skew, a signed test search accepted, its answer signed, verified and bound
//! to the request, and every answer valid against the spec.
//!
//! The doctor decides nothing itself: the answer is read by [`DciClient::read_exchange`], the
//! same rules as every call, and a signature is described by [`signature::explain`], whose
//! outcome is [`signature::check`]'s. It only sends one request (a sync search for an
//! identifier that does not exist, unless one is given) and never prints a token or secret:
//! every text the registry sends back goes through the client's redactor.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::auth::Auth;
use super::client::{
    header_pending, match_items, search_criteria, DciClient, Endpoint, Exchange, IBR_REG_TYPE,
};
use super::envelope::{new_id, now_unix};
use super::error::{Error, Redactor};
use super::http::{read_limited, Secret};
use super::jwk::{Jwks, MAX_JWKS_BYTES};
use super::keysource::{jwks_http, RegistryKeys};
use super::signature::{self, Explanation, Policy};
use super::spec;

/// A step's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    /// Did not apply (not configured, or an earlier step failed); `found` says why.
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One step of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Stable id (scripts and tests rely on it): `reachable`, `tls`, `token`, `registry_jwks`,
    /// `our_key`, `clock_skew`, `search`, `answer_signature`, `answer_binding`, `answer_spec`.
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// What was found.
    pub found: String,
    /// What to change (for warnings and failures).
    pub fix: Option<String>,
}

/// The steps, in the order they are reported.
pub const STEPS: [(&str, &str); 10] = [
    ("reachable", "base URL reachable"),
    ("tls", "TLS certificate verified"),
    ("token", "token obtained"),
    ("registry_jwks", "registry's keys (JWKS) fetched"),
    ("our_key", "our public key published"),
    ("clock_skew", "clock skew against the registry"),
    ("search", "signed test search accepted"),
    ("answer_signature", "answer signed and verified"),
    ("answer_binding", "answer bound to the request"),
    ("answer_spec", "answers valid against the IBR spec"),
];

/// Exit code when every step passed or did not apply.
pub const EXIT_OK: i32 = 0;
/// Exit code when a step warned and none failed.
pub const EXIT_WARNINGS: i32 = 1;
/// Exit code when a step failed.
pub const EXIT_FAILURES: i32 = 3;

/// Clock skew (seconds) up to which the step passes; beyond [`Policy::at`]'s `max_skew`
/// signatures are refused, and the step fails.
pub const SKEW_PASS: f64 = 10.0;

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub base_url: String,
    pub steps: Vec<Step>,
}

impl Report {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The worst status of any step.
    pub fn worst(&self) -> Status {
        self.steps
            .iter()
            .map(|s| s.status)
            .max()
            .unwrap_or(Status::Pass)
    }

    /// 0 when every step passed or did not apply, 1 when one warned and none failed, 3 when
    /// one failed (configuration errors, found before any step runs, are 2 in the CLI).
    pub fn exit_code(&self) -> i32 {
        match self.worst() {
            Status::Pass | Status::Skip => EXIT_OK,
            Status::Warn => EXIT_WARNINGS,
            Status::Fail => EXIT_FAILURES,
        }
    }

    pub fn to_value(&self) -> Value {
        let count = |st: Status| self.steps.iter().filter(|s| s.status == st).count();
        json!({
            "base_url": self.base_url,
            "ok": self.exit_code() == EXIT_OK,
            "exit_code": self.exit_code(),
            "summary": {
                "pass": count(Status::Pass),
                "warn": count(Status::Warn),
                "fail": count(Status::Fail),
                "skip": count(Status::Skip),
            },
            "steps": self.steps.iter().map(|s| json!({
                "id": s.id,
                "title": s.title,
                "status": s.status.as_str(),
                "found": s.found,
                "fix": s.fix,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What the doctor needs beyond the client's configuration.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where our public key (JWKS) is published for the registry to fetch; checked when given.
    pub our_jwks_url: Option<String>,
    /// Identifier of the test search (default `UIN` and a random value nobody has).
    pub id_type: Option<String>,
    pub id_value: Option<String>,
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The text of a reqwest error and its causes, its URL without query or credentials.
fn chain(err: &reqwest::Error) -> String {
    let full = err.url().map(|u| u.as_str().to_owned());
    let short = err.url().map(|u| {
        format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map_or(String::new(), |p| format!(":{p}"))
        )
    });
    let mut parts = vec![];
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    let mut text = parts.join(": ");
    // reqwest names the URL in its own message: keep its origin only.
    if let (Some(full), Some(short)) = (full, short) {
        text = text.replace(&full, &short);
    }
    text.chars().take(400).collect()
}

/// Why a TLS handshake failed, and what to change, from rustls' error text; None when the error
/// is not about TLS.
pub fn classify_tls(error_text: &str) -> Option<(String, String)> {
    let t = error_text.to_ascii_lowercase().replace(['_', '-'], "");
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    let (why, fix) = if has(&["expired", "notvalidyet", "not valid yet", "notvalidafter"]) {
        (
            "the certificate has expired (or is not valid yet)",
            "the registry must renew its certificate; if it is current, check this machine's \
             clock",
        )
    } else if has(&["selfsigned", "self signed"]) {
        (
            "the certificate is self-signed",
            "give the certificate (or its CA) with ca_bundle (--ca-bundle), or ask the registry \
             for a certificate from a public CA",
        )
    } else if has(&["unknownissuer", "unknown issuer", "unknownca", "unknown ca"]) {
        (
            "the certificate's issuer is not trusted (a self-signed certificate or a private CA)",
            "give the registry's CA certificate with ca_bundle (--ca-bundle)",
        )
    } else if has(&[
        "notvalidforname",
        "not valid for name",
        "hostname",
        "name mismatch",
        "subjectaltname",
    ]) {
        (
            "the certificate is not for this host name (hostname mismatch)",
            "use in base_url the host name the certificate names (not an IP address or an \
             internal alias)",
        )
    } else if has(&["revoked"]) {
        (
            "the certificate is revoked",
            "the registry must replace its certificate",
        )
    } else if has(&[
        "invalid peer certificate",
        "certificate",
        "tls",
        "handshake",
        "ssl",
    ]) {
        (
            "the TLS handshake failed",
            "check that base_url's port speaks TLS and the certificate chain is complete",
        )
    } else {
        return None;
    };
    Some((
        format!(
            "{why} ({})",
            error_text.chars().take(240).collect::<String>()
        ),
        fix.to_owned(),
    ))
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Seconds between an HTTP date and our clock at `at`.
fn http_date_offset(date: &str, at: f64) -> Option<f64> {
    let parsed = chrono::DateTime::parse_from_rfc2822(date.trim().trim_end_matches(" GMT"))
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc2822(&date.replace("GMT", "+0000")).ok())?;
    Some(parsed.timestamp() as f64 - at)
}

fn rfc3339_offset(ts: &str, at: f64) -> Option<f64> {
    let parsed = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some(parsed.timestamp() as f64 + f64::from(parsed.timestamp_subsec_millis()) / 1000.0 - at)
}

struct Run<'a> {
    client: &'a DciClient,
    opts: &'a Options,
    peer: Redactor,
    steps: Vec<Step>,
    /// (source, seconds the registry's clock is ahead of ours)
    skew: Vec<(&'static str, f64)>,
}

impl Run<'_> {
    fn put(&mut self, id: &'static str, status: Status, found: String, fix: Option<String>) {
        let title = STEPS.iter().find(|(i, _)| *i == id).map_or(id, |(_, t)| *t);
        self.steps.push(Step {
            id,
            title,
            status,
            found,
            fix,
        });
    }
    fn pass(&mut self, id: &'static str, found: String) {
        self.put(id, Status::Pass, found, None);
    }
    fn skip(&mut self, id: &'static str, found: impl Into<String>) {
        self.put(id, Status::Skip, found.into(), None);
    }
    fn warn(&mut self, id: &'static str, found: String, fix: impl Into<String>) {
        self.put(id, Status::Warn, found, Some(fix.into()));
    }
    fn fail(&mut self, id: &'static str, found: String, fix: impl Into<String>) {
        self.put(id, Status::Fail, found, Some(fix.into()));
    }
    fn text(&self, t: &str) -> String {
        self.peer.text(t)
    }
}

/// Runs every step against the registry `client` is configured for.
pub fn run(client: &DciClient, opts: &Options) -> Report {
    let mut r = Run {
        client,
        opts,
        peer: client.redactor().clone(),
        steps: vec![],
        skew: vec![],
    };
    let reached = reachable_and_tls(&mut r);
    let token = if reached {
        token(&mut r)
    } else {
        r.skip("token", "not tried: the registry is not reachable");
        None
    };
    registry_jwks(&mut r);
    our_key(&mut r);
    let exchange = if !reached {
        None
    } else {
        match &token {
            Some(t) => test_search(&mut r, t.as_ref()),
            None => None,
        }
    };
    if exchange.is_none() && !r.steps.iter().any(|s| s.id == "search") {
        r.skip(
            "search",
            if reached {
                "not tried: no token"
            } else {
                "not tried: the registry is not reachable"
            },
        );
    }
    answer(&mut r, exchange.as_ref());
    answer_spec(&mut r, exchange.as_ref());
    clock_skew(&mut r);
    let mut steps = std::mem::take(&mut r.steps);
    steps.sort_by_key(|s| STEPS.iter().position(|(id, _)| *id == s.id));
    Report {
        base_url: client.base_url().to_owned(),
        steps,
    }
}

/// `reachable` and `tls`: one GET of the base URL (any HTTP answer will do).
fn reachable_and_tls(r: &mut Run<'_>) -> bool {
    let base = r.client.base_url().to_owned();
    let url = match reqwest::Url::parse(&base) {
        Ok(u) => u,
        Err(_) => {
            r.fail(
                "reachable",
                "base_url is not a URL".into(),
                "give the registry's base URL",
            );
            r.skip("tls", "not tried");
            return false;
        }
    };
    let settings = r.client.http_settings().clone();
    let http = match r.client.http_client() {
        Ok(h) => h,
        Err(e) => {
            r.fail(
                "reachable",
                format!("cannot build the HTTP client: {e}"),
                "check ca_bundle",
            );
            r.skip("tls", "not tried");
            return false;
        }
    };
    let sent_at = unix_now_f64();
    let answer = http.get(url.clone()).send();
    let received_at = unix_now_f64();
    let https = url.scheme() == "https";
    let tls_error = answer
        .as_ref()
        .err()
        .and_then(|e| classify_tls(&chain(e)).filter(|_| https && !e.is_timeout()));
    let reached = match &answer {
        Ok(resp) => {
            if let Some(d) = resp.headers().get("Date").and_then(|v| v.to_str().ok()) {
                if let Some(off) = http_date_offset(d, (sent_at + received_at) / 2.0) {
                    r.skew.push(("Date header of the base URL", off));
                }
            }
            r.pass(
                "reachable",
                format!(
                    "{base} answered HTTP {} in {:.0} ms",
                    resp.status().as_u16(),
                    (received_at - sent_at) * 1000.0
                ),
            );
            true
        }
        Err(_) if tls_error.is_some() => {
            r.pass(
                "reachable",
                format!("{base} accepts connections (the TLS handshake failed, see tls)"),
            );
            true
        }
        Err(e) => {
            let (found, fix) = if e.is_timeout() {
                (
                    format!(
                        "{base} did not answer within {:.0} s",
                        settings.timeout.as_secs_f64()
                    ),
                    "check the host and port, firewalls and proxies on the way; raise timeout \
                     for a slow registry",
                )
            } else {
                (
                    format!("cannot connect to {base}: {}", r.text(&chain(e))),
                    "check base_url (host, port, scheme), DNS, and that this machine may reach \
                     the registry (firewall, VPN, proxy)",
                )
            };
            r.fail("reachable", found, fix);
            false
        }
    };
    // TLS.
    if !https {
        if is_loopback(&url) {
            r.skip("tls", "plain http to a loopback address: no TLS to verify");
        } else {
            r.warn(
                "tls",
                format!("{base} is plain http: the token and every answer travel unencrypted"),
                "use the registry's https URL",
            );
        }
    } else if let Some((why, fix)) = tls_error {
        r.fail("tls", why, fix);
    } else if !reached {
        r.skip("tls", "not tried: the registry is not reachable");
    } else if !settings.verify_tls {
        // Verification is off: say what it would find.
        let verified = crate::dci::http::LazyClient::new(crate::dci::http::HttpSettings {
            verify_tls: true,
            ..settings.clone()
        })
        .and_then(|c| c.get())
        .map(|c| c.get(url.clone()).send());
        let found = match verified {
            Ok(Ok(_)) => "TLS verification is off (verify_tls false), though the certificate \
                          verifies"
                .to_owned(),
            Ok(Err(e)) => match classify_tls(&chain(&e)) {
                Some((why, _)) => format!("TLS verification is off (verify_tls false): {why}"),
                None => format!(
                    "TLS verification is off (verify_tls false); a verified connection failed: {}",
                    r.text(&chain(&e))
                ),
            },
            Err(e) => format!("TLS verification is off (verify_tls false): {e}"),
        };
        r.warn(
            "tls",
            found,
            "turn verification back on; trust a private CA with ca_bundle (--ca-bundle) instead",
        );
    } else {
        let trust = if settings.ca_bundle.is_some() {
            "the system's roots and ca_bundle"
        } else {
            "the system's roots"
        };
        r.pass("tls", format!("the certificate verified against {trust}"));
    }
    reached
}

/// `token`: a fresh OAuth2 token (the cache is neither used nor changed). Returns the token to
/// send (`Some(None)`: none is configured), or None when there is none to send.
fn token(r: &mut Run<'_>) -> Option<Option<Secret>> {
    let client = r.client;
    match client.auth() {
        Auth::None => {
            r.skip("token", "no authentication configured (auth none)");
            Some(None)
        }
        Auth::Bearer(t) => {
            r.skip(
                "token",
                "a static bearer token is configured: the test search shows whether the \
                 registry takes it",
            );
            Some(Some(t.clone()))
        }
        Auth::OAuth2(o) => {
            let http = match client.http_client() {
                Ok(h) => h,
                Err(e) => {
                    r.fail("token", e.to_string(), "check the HTTP settings");
                    return None;
                }
            };
            match o.fetch_fresh(&http) {
                Ok(info) => {
                    r.peer = r.peer.clone().with_secret(info.token.expose());
                    let secs = info.lifetime.as_secs();
                    let mut found = format!(
                        "token obtained from {} for client '{}': type {}, expires in {} s{}",
                        o.token_url,
                        o.client_id,
                        info.token_type
                            .as_deref()
                            .map_or("(not given)".into(), |t| r.text(t)),
                        secs,
                        info.scope
                            .as_deref()
                            .map_or(String::new(), |s| format!(", scope '{}'", r.text(s)))
                    );
                    let mut problems: Vec<&str> = vec![];
                    if info.expires_in.is_none() {
                        problems.push("the answer gives no expires_in (read as one hour)");
                    }
                    if secs < 120 {
                        problems.push(
                            "the token lives under two minutes (it is renewed 60 s before it \
                             expires: nearly every call fetches a new one)",
                        );
                    }
                    if info
                        .token_type
                        .as_deref()
                        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
                    {
                        problems.push("the token type is not Bearer");
                    }
                    if let (Some(asked), Some(given)) = (&o.scope, &info.scope) {
                        let given: Vec<&str> = given.split_whitespace().collect();
                        if !asked.split_whitespace().all(|s| given.contains(&s)) {
                            problems.push("the token's scope lacks part of the scope asked for");
                        }
                    }
                    if problems.is_empty() {
                        r.pass("token", found);
                    } else {
                        found.push_str(&format!("; {}", problems.join("; ")));
                        r.warn(
                            "token",
                            found,
                            "ask the registry's identity provider for a Bearer token with an \
                             expires_in of minutes or more, in the scope asked for",
                        );
                    }
                    Some(Some(info.token))
                }
                Err(Error::Auth {
                    status,
                    code,
                    message,
                }) => {
                    let fix = match (status, code.as_deref()) {
                        (Some(404), _) => "token_url is wrong: check the path of the token \
                                           endpoint"
                            .to_owned(),
                        (_, Some("invalid_scope")) => "the scope is not allowed for this client: \
                                                       check scope"
                            .to_owned(),
                        (_, Some("unauthorized_client")) => {
                            "this client may not use client credentials: ask the registry to \
                             enable the grant"
                                .to_owned()
                        }
                        _ => "check client_id and client_secret, and credentials_location \
                              (body, basic or query: where the token endpoint expects them)"
                            .to_owned(),
                    };
                    r.fail("token", r.text(&message), fix);
                    None
                }
                Err(e) => {
                    let text = r.text(&e.to_string());
                    let fix = match classify_tls(&text) {
                        Some((_, fix)) => fix,
                        None => "check token_url and that this machine can reach it".to_owned(),
                    };
                    r.fail("token", format!("no token: {text}"), fix);
                    None
                }
            }
        }
    }
}

/// A JWKS fetched for a person: the set, and notes about its URL (scheme, redirects).
fn fetch_jwks_report(
    client: &DciClient,
    url: &str,
    allow_http: bool,
    what: &str,
) -> Result<(Jwks, Vec<String>, bool), (String, String)> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        (
            format!("{what} URL is not a URL"),
            format!("fix the {what} URL"),
        )
    })?;
    let mut notes = vec![];
    let mut warn = false;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&parsed) => notes.push("plain http to a loopback address".into()),
        "http" if allow_http => {
            notes.push("plain http: the keys can be swapped on the way".into());
            warn = true;
        }
        "http" => {
            return Err((
                format!("{what} URL {url} is plain http"),
                "use https (plain http is refused unless allowed explicitly)".into(),
            ))
        }
        other => {
            return Err((
                format!("{what} URL scheme '{other}' is not supported"),
                "use https".into(),
            ))
        }
    }
    let settings = client.http_settings();
    let http = jwks_http(settings.verify_tls, settings.ca_bundle.clone())
        .and_then(|c| c.get())
        .map_err(|e| (e.to_string(), "check ca_bundle".to_owned()))?;
    let resp = http
        .get(url)
        .header("Accept", "application/json")
        .send()
        .map_err(|e| {
            let text = chain(&e);
            match classify_tls(&text) {
                Some((why, fix)) => (format!("{what} fetch from {url}: {why}"), fix),
                None => (
                    format!("{what} fetch from {url} failed: {text}"),
                    format!("check the {what} URL and that this machine can reach it"),
                ),
            }
        })?;
    if resp.url().as_str() != parsed.as_str() {
        notes.push(format!(
            "redirected (same origin) to {}: configure that URL to save a round trip",
            resp.url()
        ));
    }
    let status = resp.status();
    if status.is_redirection() {
        let to = resp
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .chars()
            .take(200)
            .collect::<String>();
        return Err((
            format!(
                "{what} at {url} redirects to {to}: only up to 3 redirects to the same scheme, \
                 host and port are followed"
            ),
            format!("configure the {what} URL the keys are really served at"),
        ));
    }
    if !status.is_success() {
        return Err((
            format!("{what} at {url} answered HTTP {}", status.as_u16()),
            format!("check the {what} URL"),
        ));
    }
    let body = read_limited(resp, MAX_JWKS_BYTES, "JWKS fetch")
        .map_err(|e| (e.to_string(), "serve a JWKS of at most 1 MiB".to_owned()))?;
    let jwks = Jwks::from_slice(&body).map_err(|e| {
        (
            format!("{what} at {url} is not a usable JWKS: {e}"),
            "serve {\"keys\": [public JWKs]} as JSON".to_owned(),
        )
    })?;
    Ok((jwks, notes, warn))
}

fn describe_set(jwks: &Jwks) -> String {
    let keys: Vec<String> = jwks
        .keys
        .iter()
        .map(|k| {
            format!(
                "{} ({})",
                k.kid.as_deref().unwrap_or("no kid"),
                k.key.algorithm().as_str()
            )
        })
        .collect();
    format!("{} key(s): {}", keys.len(), keys.join(", "))
}

fn registry_jwks(r: &mut Run<'_>) {
    match r.client.registry_keys() {
        RegistryKeys::None => r.warn(
            "registry_jwks",
            "no registry keys configured: answers are read unverified".into(),
            "get the registry's JWKS URL and set registry_jwks_url (or its keys in \
             registry_keys)",
        ),
        RegistryKeys::Key(k) => r.pass(
            "registry_jwks",
            format!(
                "one configured {} key (not fetched): every answer's kid is verified with it",
                k.algorithm().as_str()
            ),
        ),
        RegistryKeys::Set(s) => {
            if s.keys.is_empty() {
                r.fail(
                    "registry_jwks",
                    "the configured key set holds no usable key".into(),
                    "configure the registry's public keys",
                );
            } else {
                r.pass(
                    "registry_jwks",
                    format!("configured (not fetched): {}", describe_set(s)),
                );
            }
        }
        RegistryKeys::Url {
            url, allow_http, ..
        } => {
            let (url, allow_http) = (url.clone(), *allow_http);
            match fetch_jwks_report(r.client, &url, allow_http, "registry JWKS") {
                Err((found, fix)) => r.fail("registry_jwks", found, fix),
                Ok((jwks, notes, warn)) => {
                    let mut found = format!("fetched {url}: {}", describe_set(&jwks));
                    for n in &notes {
                        found.push_str(&format!("; {n}"));
                    }
                    if jwks.keys.is_empty() {
                        r.fail(
                            "registry_jwks",
                            found,
                            "the registry must publish its public signing keys",
                        );
                    } else if warn {
                        r.warn(
                            "registry_jwks",
                            found,
                            "fetch the registry's JWKS over https",
                        );
                    } else {
                        r.pass("registry_jwks", found);
                    }
                }
            }
        }
    }
}

fn our_key(r: &mut Run<'_>) {
    let Some(signer) = r.client.signer() else {
        r.skip("our_key", "requests are sent unsigned: no key to publish");
        return;
    };
    let kid = signer.kid();
    let Some(url) = r.opts.our_jwks_url.clone() else {
        r.skip(
            "our_key",
            format!(
                "no URL given for our JWKS (our_jwks_url): the registry must have our key {kid} \
                 (published or registered with it)"
            ),
        );
        return;
    };
    let (jwks, notes, warn) = match fetch_jwks_report(r.client, &url, true, "our JWKS") {
        Ok(x) => x,
        Err((found, fix)) => {
            r.fail("our_key", found, fix);
            return;
        }
    };
    let ours = signer.key().verifying_key().spki_der().ok();
    let notes: String = notes.iter().map(|n| format!("; {n}")).collect();
    match jwks.get(&kid) {
        None => r.fail(
            "our_key",
            format!(
                "{url} does not publish our kid {kid} ({}){notes}",
                describe_set(&jwks)
            ),
            format!(
                "publish our public key under kid {kid} at {url} (spp-dci-ibr keygen writes the \
                 JWK); a registry that cannot find it refuses every signed request"
            ),
        ),
        Some(j) if j.key.spki_der().ok() != ours => r.fail(
            "our_key",
            format!("{url} publishes kid {kid} with another key than ours{notes}"),
            "publish the public key of the signing key in use (or sign with the published one)",
        ),
        Some(_) if warn => r.warn(
            "our_key",
            format!("{url} publishes our key {kid}{notes}"),
            "publish our JWKS over https",
        ),
        Some(_) => r.pass("our_key", format!("{url} publishes our key {kid}{notes}")),
    }
}

fn test_search(r: &mut Run<'_>, token: Option<&Secret>) -> Option<Exchange> {
    let id_type = r.opts.id_type.clone().unwrap_or_else(|| "UIN".into());
    let id_value = r
        .opts
        .id_value
        .clone()
        .unwrap_or_else(|| format!("spp-dci-doctor-{}", new_id()));
    let criteria = search_criteria(
        "idtype-value",
        json!({"type": id_type, "value": id_value}),
        IBR_REG_TYPE,
        None,
        1,
        1,
    );
    let (sent, message) = r.client.search_message(vec![criteria], None);
    let path = r.client.path(Endpoint::SyncSearch).to_owned();
    let ex = match r
        .client
        .exchange(Endpoint::SyncSearch, &message, 1, sent, token)
    {
        Ok(ex) => ex,
        Err(e) => {
            r.fail(
                "search",
                format!("POST {path} got no answer: {}", r.text(&e.to_string())),
                "check the sync_search path and the registry's health",
            );
            return None;
        }
    };
    r.peer = ex.peer.clone();
    if let Some(off) = ex
        .date
        .as_deref()
        .and_then(|d| http_date_offset(d, (ex.sent_at + ex.received_at) / 2.0))
    {
        r.skew.push(("Date header of the search answer", off));
    }
    let json: Option<Value> = serde_json::from_slice(&ex.body).ok();
    let signed = if r.client.signer().is_some() {
        "signed"
    } else {
        "unsigned"
    };
    if (200..300).contains(&ex.status) {
        let header = json.as_ref().and_then(|j| j.get("header"));
        let hs = header.and_then(|h| h.get("status")).and_then(Value::as_str);
        if hs == Some("rjct") {
            let field = |k: &str| {
                header
                    .and_then(|h| h.get(k))
                    .and_then(Value::as_str)
                    .map(|t| r.text(t))
                    .unwrap_or_default()
            };
            r.fail(
                "search",
                format!(
                    "POST {path} ({signed}) was rejected: {} {}",
                    field("status_reason_code"),
                    field("status_reason_message")
                ),
                "read the registry's reason; the request's shape is checked in answer_spec",
            );
        } else {
            r.pass(
                "search",
                format!(
                    "POST {path} ({signed}, message_id {}) answered HTTP {}{}",
                    ex.sent.message_id,
                    ex.status,
                    hs.map_or(String::new(), |s| format!(", header status {}", r.text(s)))
                ),
            );
        }
        return Some(ex);
    }
    let (code, message) = match r.client.read_exchange(&ex) {
        Err(Error::Auth { code, message, .. }) | Err(Error::HttpStatus { code, message, .. }) => {
            (code, message)
        }
        Err(e) => (None, e.to_string()),
        Ok(_) => (None, String::new()),
    };
    let code_text = code.as_deref().unwrap_or("");
    let found = format!(
        "POST {path} ({signed}) answered HTTP {}{}: {}",
        ex.status,
        code.as_deref().map_or(String::new(), |c| format!(" {c}")),
        message
    );
    let fix = match ex.status {
        401 | 403 if code_text.contains("signature") || code_text.contains("sender_id") => {
            format!(
                "the registry refused our signature: it must have our public key under kid {} \
                 (publish it, see our_key, or register it with the registry), and sender_id \
                 must be the one it knows us by",
                r.client.signer().map_or("-".into(), |s| s.kid())
            )
        }
        401 | 403 => "the registry refused our token: check that token_url is this registry's \
                     identity provider, the scope, and that this client may call the registry"
            .to_owned(),
        400 => "the registry refused the request's shape: see answer_spec, and report it with \
                the request (spp-dci-ibr search --dry-run shows it)"
            .to_owned(),
        404 | 405 => "the sync_search path is wrong: set it with --path sync_search=/…".to_owned(),
        _ => "the registry failed: retry later, or ask the registry's operators".to_owned(),
    };
    r.fail("search", found, fix);
    Some(ex)
}

/// `answer_signature` and `answer_binding`, read by the client's own rules.
fn answer(r: &mut Run<'_>, ex: Option<&Exchange>) {
    let Some(ex) = ex.filter(|ex| (200..300).contains(&ex.status)) else {
        r.skip("answer_signature", "no answer to read");
        r.skip("answer_binding", "no answer to read");
        return;
    };
    let json: Option<Value> = serde_json::from_slice(&ex.body).ok();
    if json
        .as_ref()
        .and_then(|j| j.get("header"))
        .and_then(|h| h.get("status"))
        .and_then(Value::as_str)
        == Some("rjct")
    {
        r.skip("answer_signature", "the search was rejected (see search)");
        r.skip("answer_binding", "the search was rejected (see search)");
        return;
    }
    let explained = json.as_ref().and_then(|j| explain_answer(r.client, j));
    if let Some(obj) = json.as_ref().and_then(|j| j.get("header")) {
        if let Some(ts) = obj.get("message_ts").and_then(Value::as_str) {
            if let Some(off) = rfc3339_offset(ts, (ex.sent_at + ex.received_at) / 2.0) {
                r.skew.push(("the answer's header.message_ts", off));
            }
        }
    }
    if let Some(created) = json
        .as_ref()
        .and_then(|j| j.get("signature"))
        .and_then(Value::as_str)
        .and_then(|s| signature::parse_params(s).ok())
        .map(|p| p.created)
    {
        r.skew.push((
            "the answer signature's created",
            created as f64 - (ex.sent_at + ex.received_at) / 2.0,
        ));
    }
    match r.client.read_exchange(ex) {
        Ok(reply) => {
            if reply.verified {
                let how = explained.as_ref().map_or(String::new(), |e| {
                    format!(
                        " with kid {} over the header {}",
                        e.check
                            .kid
                            .as_deref()
                            .map_or("(none)".into(), |k| r.text(k)),
                        e.verified_form.map_or("?", |f| f.as_str())
                    )
                });
                r.pass("answer_signature", format!("the answer verified{how}"));
            } else {
                r.warn(
                    "answer_signature",
                    "the answer was read unverified (no registry keys configured)".into(),
                    "configure the registry's keys (registry_jwks_url): an unverified answer \
                     can be forged",
                );
            }
            binding_items(r, ex, reply.message());
        }
        Err(Error::Signature(msg)) => {
            let (found, fix) = signature_failure(r, &msg, explained.as_ref());
            r.fail("answer_signature", found, fix);
            r.skip(
                "answer_binding",
                "not checked: the answer did not verify (see answer_signature)",
            );
        }
        Err(Error::Protocol(msg))
            if json
                .as_ref()
                .is_some_and(|j| j.get("header").is_some_and(Value::is_object)) =>
        {
            // Verification passed (or is off): the binding refused it.
            if r.client.verifies_answers() {
                r.pass("answer_signature", "the answer verified".into());
            } else {
                r.warn(
                    "answer_signature",
                    "the answer was read unverified (no registry keys configured)".into(),
                    "configure the registry's keys (registry_jwks_url)",
                );
            }
            r.fail(
                "answer_binding",
                r.text(&msg),
                "the registry must answer with our transaction_id, our sender_id as \
                 receiver_id, the on-search action, a fresh message_id and our reference_ids",
            );
        }
        Err(e) => {
            r.fail(
                "answer_signature",
                format!("the answer cannot be read: {}", r.text(&e.to_string())),
                "the registry must answer a sync search with a signed DCI envelope",
            );
            r.skip("answer_binding", "not checked: the answer cannot be read");
        }
    }
}

fn binding_items(r: &mut Run<'_>, ex: &Exchange, message: Option<&Value>) {
    let header_pdng = serde_json::from_slice::<Value>(&ex.body)
        .ok()
        .and_then(|j| j.get("header").map(header_pending))
        .unwrap_or(false);
    let answered = message.and_then(|m| m.get("search_response")).cloned();
    match match_items(&ex.sent.reference_ids, answered, header_pdng, &ex.peer) {
        Ok(items) => {
            let statuses: Vec<&str> = items.iter().map(|i| i.status.as_str()).collect();
            r.pass(
                "answer_binding",
                format!(
                    "bound to our request (action, receiver_id, transaction_id {}, a new \
                     message_id, reference_id); item status: {}",
                    ex.sent.transaction_id,
                    statuses.join(", ")
                ),
            );
        }
        Err(e) => r.fail(
            "answer_binding",
            r.text(&e.to_string()),
            "the registry must answer each search item under the reference_id we sent",
        ),
    }
}

/// The explanation of an envelope's signature with the registry's keys, when there are any.
fn explain_answer(client: &DciClient, body: &Value) -> Option<Explanation> {
    let header = body.get("header")?;
    let message = body.get("message")?;
    let field = body.get("signature").and_then(Value::as_str).unwrap_or("");
    if field.is_empty() || !client.registry_keys().is_configured() {
        return None;
    }
    let kid = signature::parse_params(field).ok().and_then(|p| p.kid);
    client
        .registry_keys()
        .with_keys(kid.as_deref(), |keys| {
            signature::explain(field, &header, &message, keys, Policy::at(now_unix()))
        })
        .ok()
}

fn signature_failure(r: &Run<'_>, msg: &str, e: Option<&Explanation>) -> (String, String) {
    let msg = r.text(msg);
    let Some(e) = e else {
        if msg.contains("not signed") {
            return (
                format!("{msg}: its signature is empty or missing"),
                "the registry must sign its answers (DCI signature over the canonical header and \
                 message); only by explicit choice read them unverified \
                 (accept_unverified_answers, no registry keys)"
                    .into(),
            );
        }
        return (
            msg,
            "the registry must answer with a signed DCI envelope".into(),
        );
    };
    let kid = e
        .check
        .kid
        .as_deref()
        .map_or("(none)".into(), |k| r.text(k));
    let mut found = format!(
        "{msg}; canonical bytes sha256 {}; {}",
        e.canonical_digest,
        e.reasons
            .iter()
            .map(|x| r.text(x))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let unknown_kid = e.key.is_none()
        || e.key
            .as_ref()
            .is_some_and(|k| k.chosen == "only key of the set");
    let fix = match e.check.outcome {
        signature::Outcome::NotYetValid | signature::Outcome::Expired => {
            "a clock is off (see clock_skew): synchronise this machine's clock (NTP) or ask the \
             registry to"
                .to_owned()
        }
        _ if unknown_kid => {
            found.push_str(&format!(
                "; the answer is signed by kid {kid}, which the registry's keys do not hold"
            ));
            "the registry signs with a key it does not publish: ask it to publish its current \
             key in its JWKS (or update the configured registry keys)"
                .to_owned()
        }
        signature::Outcome::Invalid => format!(
            "the signature under kid {kid} does not verify over the canonical bytes: the registry \
             signs other bytes than it sends, or with another key than it publishes (compare \
             with spp-dci-ibr verify --explain)"
        ),
        signature::Outcome::LifetimeTooLong => {
            "the registry's signatures live longer than an hour: ask it to shorten them".into()
        }
        _ => "the registry's signature field is not a DCI signature (PROTOCOL §2)".into(),
    };
    (found, fix)
}

fn answer_spec(r: &mut Run<'_>, ex: Option<&Exchange>) {
    let Some(ex) = ex else {
        r.skip("answer_spec", "no answer to validate");
        return;
    };
    let route = Endpoint::SyncSearch.default_path();
    let Ok(json) = serde_json::from_slice::<Value>(&ex.body) else {
        r.fail(
            "answer_spec",
            format!(
                "the answer to {route} (HTTP {}) is not JSON ({} bytes)",
                ex.status,
                ex.body.len()
            ),
            "the registry must answer JSON",
        );
        return;
    };
    let spec = spec::spec();
    let (what, checked) = if (200..300).contains(&ex.status) {
        ("answer", spec.check_answer(route, &json))
    } else {
        match spec.error_schema() {
            Some(schema) => ("error answer", spec.check(schema, &json)),
            None => ("error answer", Ok(())),
        }
    };
    match checked {
        Ok(()) => r.pass(
            "answer_spec",
            format!(
                "the {what} to {route} (HTTP {}) conforms to the IBR spec",
                ex.status
            ),
        ),
        Err(v) => r.fail(
            "answer_spec",
            format!(
                "the {what} to {route} (HTTP {}) does not conform to the IBR spec: {}",
                ex.status,
                r.text(&v.to_string())
            ),
            "the registry's answers must follow spec/ibr_api_v1.0.0.yaml; report it with this \
             path, or read it leniently only where docs/WIRE.md says so",
        ),
    }
}

fn clock_skew(r: &mut Run<'_>) {
    let Some(&(worst_src, worst)) = r.skew.iter().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
    else {
        r.skip("clock_skew", "no timestamp from the registry to compare");
        return;
    };
    let seen: Vec<String> = r
        .skew
        .iter()
        .map(|(src, off)| format!("{src} {off:+.0} s"))
        .collect();
    let direction = if worst >= 0.0 { "ahead of" } else { "behind" };
    let found = format!(
        "the registry's clock is {:.0} s {direction} ours (from {worst_src}; {})",
        worst.abs(),
        seen.join(", ")
    );
    let limit = Policy::at(0).max_skew as f64;
    if worst.abs() <= SKEW_PASS {
        r.pass("clock_skew", found);
    } else if worst.abs() <= limit {
        r.warn(
            "clock_skew",
            found,
            format!(
                "signatures are refused beyond {limit:.0} s of skew: synchronise clocks (NTP) \
                 before it grows"
            ),
        );
    } else {
        r.fail(
            "clock_skew",
            found,
            format!(
                "beyond {limit:.0} s signatures are refused as not yet valid or expired: \
                 synchronise this machine's clock (NTP) or ask the registry to"
            ),
        );
    }
}
