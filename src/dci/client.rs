//! The DCI client (PROTOCOL §5–6): builds and signs every request envelope, sends it over one
//! pooled connection with OAuth2, retries and backoff, and reads every answer shape — verifying
//! signed answers, binding each one to its request, turning error bodies into typed errors — and
//! the strict readers of answered items: search items (`match_items`) and enrolled statuses
//! (`read_enrolled`), the one home of the rule "only the documented shape decides".

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use log::debug;
use serde_json::{json, Map, Value};

use super::auth::Auth;
use super::envelope::{
    envelope_body, new_id, now_unix, request_header, timestamp, with_null_sender_uri,
    ResponseHeader, Signer, Status, VERSION,
};
use super::error::{Error, Redactor, Result};
use super::http::{describe, read_limited, HttpSettings, LazyClient, Secret};
use super::keys::SigningKey;
use super::keysource::RegistryKeys;
use super::replay::ReplayGuard;
use super::signature::{self, Outcome, Policy, DEFAULT_LIFETIME};

/// The IBR registry type sent in search criteria unless another is given.
pub const IBR_REG_TYPE: &str = "ns:org:RegistryType:IBR";
/// Largest answer body read (a page of records).
pub const DEFAULT_MAX_RESPONSE: usize = 32 << 20;

/// The calls a client makes, each with a configurable path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Search,
    SyncSearch,
    Subscribe,
    Unsubscribe,
    TxnStatus,
    SyncTxnStatus,
    Enrolled,
    EnrollmentUpdates,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Search,
        Endpoint::SyncSearch,
        Endpoint::Subscribe,
        Endpoint::Unsubscribe,
        Endpoint::TxnStatus,
        Endpoint::SyncTxnStatus,
        Endpoint::Enrolled,
        Endpoint::EnrollmentUpdates,
    ];

    /// The configuration key of this call's path.
    pub fn key(self) -> &'static str {
        match self {
            Endpoint::Search => "search",
            Endpoint::SyncSearch => "sync_search",
            Endpoint::Subscribe => "subscribe",
            Endpoint::Unsubscribe => "unsubscribe",
            Endpoint::TxnStatus => "txn_status",
            Endpoint::SyncTxnStatus => "sync_txn_status",
            Endpoint::Enrolled => "enrolled",
            Endpoint::EnrollmentUpdates => "enrollment_updates",
        }
    }

    pub fn default_path(self) -> &'static str {
        match self {
            Endpoint::Search => "/registry/search",
            Endpoint::SyncSearch => "/registry/sync/search",
            Endpoint::Subscribe => "/registry/subscribe",
            Endpoint::Unsubscribe => "/registry/unsubscribe",
            Endpoint::TxnStatus => "/registry/txn/status",
            Endpoint::SyncTxnStatus => "/registry/sync/txn/status",
            Endpoint::Enrolled => "/registry/sync/enrolled",
            Endpoint::EnrollmentUpdates => "/registry/sync/enrollment/updates",
        }
    }

    /// The header `action` of the request.
    pub fn action(self) -> &'static str {
        match self {
            Endpoint::Search | Endpoint::SyncSearch | Endpoint::Enrolled => "search",
            Endpoint::Subscribe => "subscribe",
            Endpoint::Unsubscribe => "unsubscribe",
            Endpoint::TxnStatus | Endpoint::SyncTxnStatus => "txn-status",
            Endpoint::EnrollmentUpdates => "notify",
        }
    }

    fn is_async(self) -> bool {
        self.callback_route().is_some()
    }

    /// The `header.action` values accepted in this call's (sync) answer: the spec's for sync
    /// search and txn status; for enrolled and enrollment updates, where the spec is silent, the
    /// `on-` form of the call and of search (enrolled is "a special type of search") or notify.
    /// Async calls are answered by an ACK, which carries no data.
    pub fn answer_actions(self) -> &'static [&'static str] {
        match self {
            Endpoint::SyncSearch => &["on-search"],
            Endpoint::SyncTxnStatus => &["txn-on-status"],
            Endpoint::Enrolled => &["on-enrolled", "on-search"],
            Endpoint::EnrollmentUpdates => &["on-enrollment-updates", "on-notify"],
            _ => &[],
        }
    }

    /// The route of our callback receiver that answers this call (PROTOCOL §8), for the async
    /// calls; `None` for sync calls, which carry no `sender_uri`.
    pub fn callback_route(self) -> Option<&'static str> {
        match self {
            Endpoint::Search => Some("on-search"),
            Endpoint::Subscribe => Some("on-subscribe"),
            Endpoint::Unsubscribe => Some("on-unsubscribe"),
            Endpoint::TxnStatus => Some("txn/on-status"),
            _ => None,
        }
    }
}

/// Where the registry sends the callbacks of async calls (the header's `sender_uri`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Callback {
    /// No callback URL: async calls go without `sender_uri` (the registry must know one).
    #[default]
    None,
    /// The base URL of our callback routes: each async call names its own route,
    /// `<base>/on-search`, `<base>/on-subscribe`, `<base>/on-unsubscribe`, `<base>/txn/on-status`.
    Base(String),
    /// One URL for every async call (a receiver that dispatches on `header.action`).
    Uri(String),
}

impl Callback {
    /// The `sender_uri` of a call to `endpoint`.
    pub fn sender_uri(&self, endpoint: Endpoint) -> Option<String> {
        let route = endpoint.callback_route()?;
        match self {
            Callback::None => None,
            Callback::Base(base) => Some(format!("{}/{route}", base.trim_end_matches('/'))),
            Callback::Uri(uri) => Some(uri.clone()),
        }
    }

    fn url(&self) -> Option<&str> {
        match self {
            Callback::None => None,
            Callback::Base(u) | Callback::Uri(u) => Some(u),
        }
    }
}

/// Bounded retries with exponential backoff, for connection errors, 429 and 503.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub max_retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 2,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

pub enum Signing {
    Key {
        key: std::sync::Arc<SigningKey>,
        key_id: String,
    },
    /// Explicit opt-in: the signature field is sent empty.
    Unsigned,
}

pub struct ClientConfig {
    pub base_url: String,
    pub sender_id: String,
    pub receiver_id: Option<String>,
    pub callback: Callback,
    /// Send `"sender_uri": null` when a call has no callback URL (peers that hash headers
    /// re-serialised with null optional keys, like OpenSPP). Off by default: the spec types
    /// `sender_uri` as a URI string.
    pub null_sender_uri: bool,
    pub auth: Auth,
    pub signing: Signing,
    pub registry_keys: RegistryKeys,
    pub paths: Vec<(String, String)>,
    pub http: HttpSettings,
    pub retry: Retry,
    pub max_response_bytes: usize,
    /// Read data answers without verifying them when no registry key is configured (a registry
    /// that signs nothing). Explicit opt-in, like unsigned sending; every result says so.
    pub accept_unverified_answers: bool,
}

/// What was sent: ids the caller needs to match answers and callbacks.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    pub message_id: String,
    pub transaction_id: String,
    pub reference_ids: Vec<String>,
}

/// One request sent exactly once, as it went and came back: no retry, no token renewal
/// (`doctor` looks at each part; [`DciClient::read_exchange`] reads it by the usual rules).
#[derive(Clone, Debug)]
pub struct Exchange {
    pub endpoint: Endpoint,
    pub sent: Sent,
    /// The request body as sent.
    pub request: Vec<u8>,
    pub status: u16,
    /// The answer's HTTP `Date` header.
    pub date: Option<String>,
    /// Unix seconds (with fraction) when the request left and when the answer was read.
    pub sent_at: f64,
    pub received_at: f64,
    pub body: Vec<u8>,
    /// Masks our secrets (and the token sent) in the registry's text.
    pub peer: Redactor,
}

/// An ACK (PROTOCOL §6). `rcvd` is read as ACK.
#[derive(Clone, Debug)]
pub struct Ack {
    pub ack_status: String,
    pub correlation_id: Option<String>,
    pub timestamp: Option<String>,
}

/// A readable answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// An envelope: verified when keys are configured, and (for a data answer) bound to its
    /// request.
    Envelope {
        header: Value,
        message: Value,
    },
    Ack(Ack),
    /// A bare message without envelope (some registries' enrolled answers): only ever read
    /// unverified, when no key is configured and unverified answers are accepted.
    Bare(Value),
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub sent: Sent,
    pub answer: Answer,
    /// The answer's signature was verified against the registry's keys (false for ACKs, which
    /// are unsigned by design, and for answers read unverified).
    pub verified: bool,
    /// Makes the registry's text in this answer safe for errors and results (it knows the
    /// token the request carried).
    pub peer: Redactor,
}

impl Reply {
    /// The message of an envelope or bare answer; an ACK has none.
    pub fn message(&self) -> Option<&Value> {
        match &self.answer {
            Answer::Envelope { message, .. } | Answer::Bare(message) => Some(message),
            Answer::Ack(_) => None,
        }
    }
}

/// The status of one answered search item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemStatus {
    /// Decided: `records` holds what was found — empty only for the documented zero-records
    /// shape (PROTOCOL §6).
    Succ,
    Rjct,
    Pending,
    /// The answer carried no item for this request item.
    Missing,
    /// An item of any other shape, or two items for one reference_id: it decides nothing.
    Undecided,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Succ => "succ",
            ItemStatus::Rjct => "rjct",
            ItemStatus::Pending => "pdng",
            ItemStatus::Missing => "missing",
            ItemStatus::Undecided => "undecided",
        }
    }
}

/// One search item's answer, matched to its request item.
#[derive(Clone, Debug)]
pub struct ItemAnswer {
    pub reference_id: String,
    pub status: ItemStatus,
    pub reason_code: Option<String>,
    /// The registry's reason (`rjct`), or why the item decides nothing.
    pub reason_message: Option<String>,
    /// Meaningful only for `Succ`; empty otherwise.
    pub records: Vec<Value>,
    /// The answered item without its records (they moved to `records`); Null when none.
    pub raw: Value,
}

impl ItemAnswer {
    /// `Ok` for an answered (`succ`) item, else its error: a rejected item is the registry's
    /// [`Error::Registry`]; one that decides nothing (pending, missing, of another shape) is
    /// [`Error::Undecided`], never an empty answer.
    pub fn decided(&self) -> Result<()> {
        let why = self.reason_message.as_deref();
        match self.status {
            ItemStatus::Succ => Ok(()),
            ItemStatus::Rjct => Err(Error::Registry {
                code: self.reason_code.clone(),
                message: why.unwrap_or("search item rejected").to_owned(),
            }),
            ItemStatus::Pending => Err(Error::Undecided(format!(
                "the registry's answer is pending{}",
                why.map(|m| format!(" ({m})")).unwrap_or_default()
            ))),
            ItemStatus::Missing | ItemStatus::Undecided => Err(Error::Undecided(format!(
                "the answer decides nothing for the query: {}",
                why.unwrap_or_default()
            ))),
        }
    }

    fn without_answer(reference_id: &str, status: ItemStatus, reason: String) -> Self {
        ItemAnswer {
            reference_id: reference_id.to_owned(),
            status,
            reason_code: None,
            reason_message: Some(reason),
            records: vec![],
            raw: Value::Null,
        }
    }

    /// The `Undecided` item for `raw`, and why.
    fn undecided(reference_id: &str, raw: Value, reason: String) -> Self {
        ItemAnswer {
            raw,
            ..ItemAnswer::without_answer(reference_id, ItemStatus::Undecided, reason)
        }
    }
}

/// Search criteria (SearchRequest.search_request[].search_criteria).
pub fn search_criteria(
    query_type: &str,
    query: Value,
    reg_type: &str,
    reg_record_type: Option<&str>,
    page_size: u32,
    page_number: u32,
) -> Value {
    let mut c = json!({
        "version": VERSION,
        "reg_type": reg_type,
        "query_type": query_type,
        "query": query,
        "pagination": {"page_size": page_size, "page_number": page_number},
    });
    if let Some(rt) = reg_record_type {
        c["reg_record_type"] = rt.into();
    }
    c
}

pub struct DciClient {
    base_url: String,
    sender_id: String,
    receiver_id: String,
    callback: Callback,
    null_sender_uri: bool,
    auth: Auth,
    signer: Option<Signer>,
    keys: RegistryKeys,
    paths: Vec<(Endpoint, String)>,
    http: LazyClient,
    retry: Retry,
    max_response_bytes: usize,
    accept_unverified: bool,
    /// Masks our secrets in text a peer sends back (the one place peer text is made safe).
    redactor: Redactor,
}

/// Answers remembered against replay (PROTOCOL §6), process-wide: a replayed answer is refused
/// by every client of the process, not only the one that read it first.
const MAX_REMEMBERED_ANSWERS: usize = 1_000_000;

fn seen_answers() -> &'static Mutex<ReplayGuard> {
    static SEEN: OnceLock<Mutex<ReplayGuard>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(ReplayGuard::new(MAX_REMEMBERED_ANSWERS)))
}

fn check_id(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 255 || value.chars().any(|c| c.is_control() || c == '|') {
        return Err(Error::Config(format!(
            "{what} must be 1 to 255 characters without '|' or control characters"
        )));
    }
    Ok(())
}

impl DciClient {
    /// Validates the configuration; no connection is made until the first call.
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let url = reqwest::Url::parse(&cfg.base_url)
            .map_err(|_| Error::Config("base_url is not a valid URL".into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config("base_url must be http or https".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config("base_url must not carry credentials".into()));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        check_id("sender_id", &cfg.sender_id)?;
        let receiver_id = cfg.receiver_id.clone().unwrap_or(host);
        check_id("receiver_id", &receiver_id)?;
        if let Some(cb) = cfg.callback.url() {
            let what = match cfg.callback {
                Callback::Base(_) => "callback_base_url",
                _ => "callback_uri",
            };
            let u = reqwest::Url::parse(cb)
                .map_err(|_| Error::Config(format!("{what} is not a valid URL")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(Error::Config(format!("{what} must be http or https")));
            }
        }
        let signer = match cfg.signing {
            Signing::Unsigned => None,
            Signing::Key { key, key_id } => {
                check_id("key_id", &key_id)?;
                Some(Signer::new(key, &cfg.sender_id, &key_id)?)
            }
        };
        match &cfg.auth {
            Auth::Bearer(t) if t.expose().is_empty() => {
                return Err(Error::Config("bearer auth needs a non-empty token".into()))
            }
            Auth::OAuth2(o) => {
                let u = reqwest::Url::parse(&o.token_url)
                    .map_err(|_| Error::Config("token_url is not a valid URL".into()))?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(Error::Config("token_url must be http or https".into()));
                }
                if o.client_id.is_empty() || o.client_secret.expose().is_empty() {
                    return Err(Error::Config(
                        "oauth2 needs client_id and client_secret".into(),
                    ));
                }
            }
            _ => {}
        }
        let mut paths: Vec<(Endpoint, String)> = Endpoint::ALL
            .iter()
            .map(|e| (*e, e.default_path().to_owned()))
            .collect();
        for (key, path) in &cfg.paths {
            let slot = paths
                .iter_mut()
                .find(|(e, _)| e.key() == key)
                .ok_or_else(|| Error::Config(format!("unknown path key '{key}'")))?;
            if !path.starts_with('/') {
                return Err(Error::Config(format!("path '{key}' must start with '/'")));
            }
            slot.1 = path.clone();
        }
        if cfg.max_response_bytes == 0 {
            return Err(Error::Config("max_response_bytes must be positive".into()));
        }
        let redactor = match &cfg.auth {
            Auth::None => Redactor::new(),
            Auth::Bearer(t) => Redactor::new().with_secret(t.expose()),
            Auth::OAuth2(o) => Redactor::new()
                .with_secret(o.client_secret.expose())
                .with_basic(&o.client_id, o.client_secret.expose()),
        };
        Ok(DciClient {
            base_url: cfg.base_url.trim_end_matches('/').to_owned(),
            sender_id: cfg.sender_id,
            receiver_id,
            callback: cfg.callback,
            null_sender_uri: cfg.null_sender_uri,
            auth: cfg.auth,
            signer,
            keys: cfg.registry_keys,
            paths,
            http: LazyClient::new(cfg.http)?,
            retry: cfg.retry,
            max_response_bytes: cfg.max_response_bytes,
            accept_unverified: cfg.accept_unverified_answers,
            redactor,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    pub fn sender_id(&self) -> &str {
        &self.sender_id
    }
    pub fn receiver_id(&self) -> &str {
        &self.receiver_id
    }
    pub fn callback(&self) -> &Callback {
        &self.callback
    }
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
    /// How requests are signed; None when sending unsigned (explicit opt-in).
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }
    pub fn registry_keys(&self) -> &RegistryKeys {
        &self.keys
    }
    /// Data answers are verified (registry keys are configured); false when they are read
    /// unverified by explicit opt-in.
    pub fn verifies_answers(&self) -> bool {
        self.keys.is_configured()
    }
    pub fn http_settings(&self) -> &HttpSettings {
        self.http.settings()
    }

    pub fn path(&self, endpoint: Endpoint) -> &str {
        self.paths
            .iter()
            .find(|(e, _)| *e == endpoint)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| endpoint.default_path())
    }

    /// The pooled HTTP client of API calls (no redirects followed).
    pub fn http_client(&self) -> Result<reqwest::blocking::Client> {
        self.http.get()
    }

    /// Masks our secrets in text a peer sends back.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Sends `message` to `endpoint` once with `token` (or none): no retry, no token renewal.
    /// Transport errors are returned as they are.
    pub fn exchange(
        &self,
        endpoint: Endpoint,
        message: &Value,
        total_count: usize,
        mut sent: Sent,
        token: Option<&Secret>,
    ) -> Result<Exchange> {
        let url = format!("{}{}", self.base_url, self.path(endpoint));
        let what = format!("{} {}", endpoint.key(), self.path(endpoint));
        let http = self.http.get()?;
        let (message_id, body) = self.envelope(endpoint, message, total_count)?;
        sent.message_id = message_id;
        let mut peer = self.redactor.clone();
        let mut req = http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t.expose());
            peer = peer.with_secret(t.expose());
        }
        let clock = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let sent_at = clock();
        let resp = req.send().map_err(|e| describe(e, &what))?;
        let status = resp.status().as_u16();
        let date = resp
            .headers()
            .get("Date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = read_limited(resp, self.max_response_bytes, &what)?;
        Ok(Exchange {
            endpoint,
            sent,
            request: body,
            status,
            date,
            sent_at,
            received_at: clock(),
            body: answer,
            peer,
        })
    }

    /// Reads an exchange's answer by the rules every call follows (verified, bound to its
    /// request, error bodies as typed errors).
    pub fn read_exchange(&self, ex: &Exchange) -> Result<Reply> {
        let what = format!("{} {}", ex.endpoint.key(), self.path(ex.endpoint));
        let (answer, verified) =
            self.read_answer(ex.endpoint, ex.status, &ex.body, &what, &ex.peer)?;
        self.bind(ex.endpoint, &answer, &ex.sent, &what, verified, &ex.peer)?;
        Ok(Reply {
            sent: ex.sent.clone(),
            answer,
            verified: verified.is_some(),
            peer: ex.peer.clone(),
        })
    }

    /// Fetches (or reuses) the OAuth2 token: a connection and credentials test.
    pub fn check_auth(&self) -> Result<()> {
        if let Auth::OAuth2(o) = &self.auth {
            o.token(&self.http.get()?, &self.base_url)?;
        }
        Ok(())
    }

    /// A signed envelope body for `message` with a fresh message_id, serialised once from the
    /// canonical text that is signed.
    fn envelope(
        &self,
        endpoint: Endpoint,
        message: &Value,
        total_count: usize,
    ) -> Result<(String, Vec<u8>)> {
        let header = if endpoint == Endpoint::EnrollmentUpdates {
            // The spec gives this call a callback-style header: action "notify", a status.
            ResponseHeader {
                action: endpoint.action(),
                status: Status::Succ,
                status_reason_code: None,
                status_reason_message: None,
                total_count,
                completed_count: total_count,
                sender_id: &self.sender_id,
                receiver_id: &self.receiver_id,
            }
            .to_value()
        } else {
            let sender_uri = self.callback.sender_uri(endpoint);
            let header = request_header(
                endpoint.action(),
                &self.sender_id,
                sender_uri.as_deref(),
                &self.receiver_id,
                total_count,
            );
            if self.null_sender_uri {
                with_null_sender_uri(header)
            } else {
                header
            }
        };
        let message_id = header["message_id"].as_str().unwrap_or_default().to_owned();
        let body = envelope_body(&header, message, self.signer.as_ref())?;
        Ok((message_id, body.into_bytes()))
    }

    /// Sends `message` to `endpoint` with retries, token renewal on 401, and reads the answer.
    pub fn send(
        &self,
        endpoint: Endpoint,
        message: Value,
        total_count: usize,
        sent: Sent,
    ) -> Result<Reply> {
        let url = format!("{}{}", self.base_url, self.path(endpoint));
        let what = format!("{} {}", endpoint.key(), self.path(endpoint));
        if !endpoint.is_async() && !self.keys.is_configured() && !self.accept_unverified {
            // Refused before anything is sent: an answer that cannot be verified is not read.
            return Err(Error::Config(format!(
                "no registry keys to verify the answer of {what}: give registry_keys or \
                 registry_jwks_url (the registry's public keys), or accept_unverified_answers=True \
                 to read its answers unverified"
            )));
        }
        let mut attempt = 0u32;
        let mut renewed = false;
        // Every token sent for this call: an answer may quote any of them (after a renewal too).
        let mut peer = self.redactor.clone();
        loop {
            let http = self.http.get()?;
            let (message_id, body) = self.envelope(endpoint, &message, total_count)?;
            let token = match &self.auth {
                Auth::None => None,
                Auth::Bearer(t) => Some(t.clone()),
                Auth::OAuth2(o) => Some(o.token(&http, &self.base_url)?),
            };
            debug!(
                "POST {what} message_id={message_id} attempt={}",
                attempt + 1
            );
            let mut req = http
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(body);
            if let Some(t) = &token {
                req = req.bearer_auth(t.expose());
                if matches!(self.auth, Auth::OAuth2(_)) {
                    peer = peer.with_secret(t.expose());
                }
            }
            let resp = match req.send() {
                Ok(r) => r,
                Err(e) => {
                    let retryable = e.is_connect() || (e.is_request() && !e.is_timeout());
                    let err = describe(e, &what);
                    if retryable && attempt < self.retry.max_retries {
                        self.backoff(attempt, None);
                        attempt += 1;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status().as_u16();
            if status == 401 && !renewed {
                if let (Auth::OAuth2(o), Some(t)) = (&self.auth, &token) {
                    debug!("{what}: 401, renewing the token and resending once");
                    o.invalidate(t, &self.base_url);
                    renewed = true;
                    continue;
                }
            }
            if (status == 429 || status == 503) && attempt < self.retry.max_retries {
                let after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                self.backoff(attempt, after);
                attempt += 1;
                continue;
            }
            let body = read_limited(resp, self.max_response_bytes, &what)?;
            let (answer, verified) = self.read_answer(endpoint, status, &body, &what, &peer)?;
            let mut sent = sent;
            sent.message_id = message_id;
            self.bind(endpoint, &answer, &sent, &what, verified, &peer)?;
            return Ok(Reply {
                sent,
                answer,
                verified: verified.is_some(),
                peer,
            });
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) {
        let exp = self.retry.backoff.saturating_mul(1u32 << attempt.min(16));
        let base = retry_after.unwrap_or(exp).min(self.retry.max_backoff);
        // Up to 25% jitter so that many clients do not retry in step.
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
        std::thread::sleep(base + base.mul_f64(f64::from(jitter) / 4000.0));
    }

    /// Reads an answer: `(answer, Some(signature expiry) when it was verified)`.
    fn read_answer(
        &self,
        endpoint: Endpoint,
        status: u16,
        body: &[u8],
        what: &str,
        peer: &Redactor,
    ) -> Result<(Answer, Option<i64>)> {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if !(200..300).contains(&status) {
            let (code, message) = json
                .as_ref()
                .map(|j| error_of(j, peer))
                .unwrap_or((None, None));
            let message = message.unwrap_or_else(|| format!("{what} answered HTTP {status}"));
            return Err(if status == 401 || status == 403 {
                Error::Auth {
                    status: Some(status),
                    code,
                    message,
                }
            } else {
                Error::HttpStatus {
                    status,
                    code,
                    message,
                }
            });
        }
        let Some(Value::Object(obj)) = json else {
            return Err(Error::Protocol(format!(
                "{what} answered HTTP {status} with a body that is not a JSON object ({} bytes)",
                body.len()
            )));
        };
        if let (Some(Value::Object(_)), Some(Value::Object(_))) =
            (obj.get("header"), obj.get("message"))
        {
            return self.read_envelope(obj, what, peer);
        }
        if let Some(Value::Object(msg)) = obj.get("message") {
            if msg.contains_key("ack_status") {
                return Ok((Answer::Ack(read_ack(msg, what, peer)?), None));
            }
        }
        if !endpoint.is_async()
            && (obj.contains_key("enrolled_response") || obj.contains_key("transaction_id"))
        {
            if self.keys.is_configured() {
                return Err(Error::Signature(format!(
                    "{what}: the answer is not a signed envelope (a bare message cannot be \
                     verified against the registry's keys)"
                )));
            }
            return Ok((Answer::Bare(Value::Object(obj)), None));
        }
        Err(Error::Protocol(format!(
            "{what}: the answer is neither a DCI envelope nor an ACK"
        )))
    }

    fn read_envelope(
        &self,
        mut obj: Map<String, Value>,
        what: &str,
        peer: &Redactor,
    ) -> Result<(Answer, Option<i64>)> {
        let header = obj.remove("header").unwrap_or_default();
        let message = obj.remove("message").unwrap_or_default();
        let sig = obj
            .get("signature")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut verified = None;
        if self.keys.is_configured() {
            if sig.is_empty() {
                return Err(Error::Signature(format!(
                    "{what}: the answer is not signed"
                )));
            }
            let kid = signature::parse_params(sig).ok().and_then(|p| p.kid);
            let check = self.keys.with_keys(kid.as_deref(), |keys| {
                signature::check(sig, &&header, &&message, keys, Policy::at(now_unix()))
            })?;
            if check.outcome != Outcome::Valid {
                return Err(Error::Signature(format!(
                    "{what}: the answer's signature is {} (kid {})",
                    check.outcome.as_str(),
                    check
                        .kid
                        .as_deref()
                        .map(|k| peer.text(k))
                        .as_deref()
                        .unwrap_or("none")
                )));
            }
            let sender = header.get("sender_id").and_then(Value::as_str);
            let kid_sender = check.kid.as_deref().and_then(|k| k.split('|').next());
            if kid_sender.is_some() && sender.is_some() && kid_sender != sender {
                return Err(Error::Signature(format!(
                    "{what}: the answer's kid does not belong to its sender_id"
                )));
            }
            verified = check.expires;
        }
        if header.get("status").and_then(Value::as_str) == Some("rjct") {
            let text = |k: &str| header.get(k).and_then(Value::as_str).map(|t| peer.text(t));
            return Err(Error::Registry {
                code: text("status_reason_code"),
                message: text("status_reason_message")
                    .unwrap_or_else(|| format!("{what}: the registry rejected the request")),
            });
        }
        Ok((Answer::Envelope { header, message }, verified))
    }

    /// Binds a data answer to its request (PROTOCOL §6): `header.action` one this call expects,
    /// `header.receiver_id` our sender_id, `message.transaction_id` ours, a `message_id` never
    /// read before (remembered until the signature expires). Item reference_ids are checked
    /// where the items are read ([`match_items`]). ACKs carry no data and bind to nothing.
    fn bind(
        &self,
        endpoint: Endpoint,
        answer: &Answer,
        sent: &Sent,
        what: &str,
        signature_expires: Option<i64>,
        peer: &Redactor,
    ) -> Result<()> {
        let refused = |why: String| Err(Error::Protocol(format!("{what}: {why}")));
        let (header, message) = match answer {
            Answer::Ack(_) => return Ok(()),
            _ if endpoint.is_async() => return Ok(()),
            Answer::Envelope { header, message } => (Some(header), message),
            Answer::Bare(message) => (None, message),
        };
        match message.get("transaction_id") {
            Some(Value::String(t)) if *t == sent.transaction_id => {}
            None | Some(Value::Null) => {
                return refused("the answer has no transaction_id".into());
            }
            Some(_) => return refused("the answer belongs to another transaction".into()),
        }
        let Some(header) = header else {
            return Ok(()); // bare: read unverified by opt-in, nothing more to bind
        };
        let field = |k: &str| header.get(k).and_then(Value::as_str);
        let expected = endpoint.answer_actions();
        match field("action") {
            Some(a) if expected.contains(&a) => {}
            Some(a) => {
                return refused(format!(
                    "the answer's action '{}' is not {}",
                    peer.text(a),
                    expected.join(" or ")
                ))
            }
            None => return refused("the answer has no action".into()),
        }
        match field("receiver_id") {
            Some(r) if r == self.sender_id => {}
            Some(_) => return refused("the answer is addressed to another receiver_id".into()),
            None => return refused("the answer has no receiver_id".into()),
        }
        match field("status") {
            Some("succ" | "pdng" | "rcvd" | "rjct") => {}
            Some(s) => {
                return refused(format!(
                    "the answer's header status '{}' is not one of succ, rjct, pdng, rcvd",
                    peer.text(s)
                ))
            }
            None => return refused("the answer's header has no status".into()),
        }
        let Some(message_id) = field("message_id").filter(|m| !m.is_empty()) else {
            return refused("the answer has no message_id".into());
        };
        let now = now_unix();
        // Until the signature expires (an unverified answer: the default lifetime), at most
        // the longest lifetime a signature may have.
        let expires = signature_expires.unwrap_or(now + DEFAULT_LIFETIME);
        let sender = field("sender_id").unwrap_or(&self.receiver_id);
        let first = seen_answers()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(sender, message_id, expires.min(now + 3600), now)?;
        if !first {
            return refused(format!(
                "the answer's message_id was already read (a replayed answer): {}",
                peer.text(message_id)
            ));
        }
        Ok(())
    }

    /// A sync search of many items in one envelope (`total_count` = items); answered items are
    /// matched back by `reference_id` only and read strictly ([`match_items`]).
    pub fn search_batch(
        &self,
        criteria: Vec<Value>,
        transaction_id: Option<String>,
    ) -> Result<SearchReply> {
        let (sent, message) = self.search_message(criteria, transaction_id);
        let count = sent.reference_ids.len();
        let reply = self.send(Endpoint::SyncSearch, message, count, sent)?;
        let Answer::Envelope {
            header,
            mut message,
        } = reply.answer
        else {
            return Err(Error::Protocol(
                "sync search answered without an envelope".into(),
            ));
        };
        let answered = message.get_mut("search_response").map(Value::take);
        let items = match_items(
            &reply.sent.reference_ids,
            answered,
            header_pending(&header),
            &reply.peer,
        )?;
        Ok(SearchReply {
            sent: reply.sent,
            items,
            verified: reply.verified,
        })
    }

    /// An async search: the registry ACKs, results arrive later at our `on-search` callback.
    pub fn search_async(
        &self,
        criteria: Vec<Value>,
        transaction_id: Option<String>,
    ) -> Result<(Sent, Ack)> {
        let (sent, message) = self.search_message(criteria, transaction_id);
        let count = sent.reference_ids.len();
        let reply = self.send(Endpoint::Search, message, count, sent)?;
        expect_ack(reply, "async search")
    }

    /// The message of a search for `criteria` (one item each) and what a reply binds to.
    pub fn search_message(
        &self,
        criteria: Vec<Value>,
        transaction_id: Option<String>,
    ) -> (Sent, Value) {
        let txn = transaction_id.unwrap_or_else(new_id);
        let ts = timestamp(now_unix());
        let mut refs = Vec::with_capacity(criteria.len());
        let items: Vec<Value> = criteria
            .into_iter()
            .map(|c| {
                let r = new_id();
                refs.push(r.clone());
                json!({"reference_id": r, "timestamp": ts, "search_criteria": c})
            })
            .collect();
        let message = json!({"transaction_id": txn, "search_request": items});
        (
            Sent {
                message_id: String::new(),
                transaction_id: txn,
                reference_ids: refs,
            },
            message,
        )
    }

    /// Subscribes with one or more subscribe criteria; ACKed, confirmed at `on-subscribe`.
    pub fn subscribe(
        &self,
        criteria: Vec<Value>,
        transaction_id: Option<String>,
    ) -> Result<(Sent, Ack)> {
        let txn = transaction_id.unwrap_or_else(new_id);
        let ts = timestamp(now_unix());
        let mut refs = Vec::new();
        let items: Vec<Value> = criteria
            .into_iter()
            .map(|c| {
                let r = new_id();
                refs.push(r.clone());
                json!({"reference_id": r, "timestamp": ts, "subscribe_criteria": c})
            })
            .collect();
        let n = items.len();
        let message = json!({"transaction_id": txn, "subscribe_request": items});
        let sent = Sent {
            message_id: String::new(),
            transaction_id: txn,
            reference_ids: refs,
        };
        expect_ack(
            self.send(Endpoint::Subscribe, message, n, sent)?,
            "subscribe",
        )
    }

    /// Unsubscribes subscription codes; ACKed, confirmed at `on-unsubscribe`.
    pub fn unsubscribe(
        &self,
        codes: Vec<String>,
        transaction_id: Option<String>,
    ) -> Result<(Sent, Ack)> {
        let txn = transaction_id.unwrap_or_else(new_id);
        let n = codes.len();
        let message = json!({
            "transaction_id": txn, "timestamp": timestamp(now_unix()), "subscription_codes": codes,
        });
        let sent = Sent {
            message_id: String::new(),
            transaction_id: txn,
            reference_ids: vec![],
        };
        expect_ack(
            self.send(Endpoint::Unsubscribe, message, n, sent)?,
            "unsubscribe",
        )
    }

    /// Transaction status of an earlier transaction, async (ACK, then `txn/on-status`) or sync.
    pub fn txn_status(
        &self,
        txn_type: &str,
        attribute_type: &str,
        attribute_value: Value,
        sync: bool,
    ) -> Result<Reply> {
        let txn = new_id();
        let r = new_id();
        let message = json!({
            "transaction_id": txn,
            "txnstatus_request": {
                "reference_id": r, "txn_type": txn_type,
                "attribute_type": attribute_type, "attribute_value": attribute_value,
            },
        });
        let sent = Sent {
            message_id: String::new(),
            transaction_id: txn,
            reference_ids: vec![r],
        };
        let endpoint = if sync {
            Endpoint::SyncTxnStatus
        } else {
            Endpoint::TxnStatus
        };
        let reply = self.send(endpoint, message, 1, sent)?;
        if !sync {
            if let Answer::Ack(ack) = &reply.answer {
                check_ack(ack, "txn status")?;
            }
        }
        Ok(reply)
    }

    /// `/registry/sync/enrolled` with an enrolled query.
    pub fn enrolled(
        &self,
        query_type: &str,
        query: Value,
        response_entity: Option<&str>,
    ) -> Result<Reply> {
        let txn = new_id();
        let mut criteria = json!({"query_type": query_type, "query": query});
        if let Some(e) = response_entity {
            criteria["response_entity"] = e.into();
        }
        let message = json!({"transaction_id": txn, "enrolled_criteria": criteria});
        let sent = Sent {
            message_id: String::new(),
            transaction_id: txn,
            reference_ids: vec![],
        };
        let reply = self.send(Endpoint::Enrolled, message, 1, sent)?;
        match &reply.answer {
            Answer::Ack(a) => Err(Error::Protocol(format!(
                "enrolled answered an ACK ({}) instead of a result",
                a.ack_status
            ))),
            _ => Ok(reply),
        }
    }

    /// `/registry/sync/enrollment/updates` with beneficiary records.
    pub fn enrollment_updates(&self, beneficiaries: Vec<Value>) -> Result<Reply> {
        let txn = new_id();
        let n = beneficiaries.len();
        let message =
            json!({"transaction_id": txn, "enrolled_updates": {"beneficiaries": beneficiaries}});
        let sent = Sent {
            message_id: String::new(),
            transaction_id: txn,
            reference_ids: vec![],
        };
        self.send(Endpoint::EnrollmentUpdates, message, n, sent)
    }
}

/// A sync search answer, read and matched to the request items.
#[derive(Clone, Debug)]
pub struct SearchReply {
    pub sent: Sent,
    /// One per request item, in request order.
    pub items: Vec<ItemAnswer>,
    pub verified: bool,
}

/// The answer header says the answer is not complete (`pdng`, `rcvd`): its items decide nothing.
pub fn header_pending(header: &Value) -> bool {
    matches!(
        header.get("status").and_then(Value::as_str),
        Some("pdng" | "rcvd")
    )
}

/// `(code, message)` of any of the three error body shapes (PROTOCOL §6), made safe by `peer`.
fn error_of(body: &Value, peer: &Redactor) -> (Option<String>, Option<String>) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(|t| peer.text(t));
    // DCI ERR ack: {"message": {"ack_status": "ERR", "error": {"code", "message"}}}
    if let Some(err) = body
        .get("message")
        .and_then(|m| m.get("error"))
        .filter(|e| e.is_object())
    {
        return (text(err.get("code")), text(err.get("message")));
    }
    // {"errors": [{"code", "message"}]}
    if let Some(first) = body
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return (text(first.get("code")), text(first.get("message")));
    }
    // {"detail": "..."} or {"detail": [{"msg": ...}]} or {"detail": {"code", "message"}}
    match body.get("detail") {
        Some(Value::String(s)) => (None, Some(peer.text(s))),
        Some(Value::Object(d)) => (text(d.get("code")), text(d.get("message"))),
        Some(Value::Array(a)) => (None, text(a.first().and_then(|d| d.get("msg")))),
        _ => (None, None),
    }
}

fn read_ack(msg: &Map<String, Value>, what: &str, peer: &Redactor) -> Result<Ack> {
    let status = msg
        .get("ack_status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ack = Ack {
        ack_status: if status.eq_ignore_ascii_case("rcvd") {
            "ACK".into()
        } else {
            peer.text(status).to_ascii_uppercase()
        },
        correlation_id: msg
            .get("correlation_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        timestamp: msg
            .get("timestamp")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    if ack.ack_status != "ACK" {
        let (code, message) = error_of(&json!({"message": msg}), peer);
        return Err(Error::Registry {
            code,
            message: message
                .unwrap_or_else(|| format!("{what}: the registry answered {}", ack.ack_status)),
        });
    }
    Ok(ack)
}

fn check_ack(ack: &Ack, what: &str) -> Result<()> {
    if ack.ack_status == "ACK" {
        Ok(())
    } else {
        Err(Error::Registry {
            code: None,
            message: format!("{what}: {}", ack.ack_status),
        })
    }
}

fn expect_ack(reply: Reply, what: &str) -> Result<(Sent, Ack)> {
    match reply.answer {
        Answer::Ack(ack) => Ok((reply.sent, ack)),
        // Some registries answer async calls with a signed envelope carrying the ACK status.
        Answer::Envelope { header, message } => {
            let status = header
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("rcvd");
            let ack = Ack {
                ack_status: if matches!(status, "rcvd" | "pdng" | "succ") {
                    "ACK".into()
                } else {
                    reply.peer.text(status)
                },
                correlation_id: message
                    .get("correlation_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                timestamp: header
                    .get("message_ts")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
            check_ack(&ack, what)?;
            Ok((reply.sent, ack))
        }
        Answer::Bare(_) => Err(Error::Protocol(format!("{what}: expected an ACK"))),
    }
}

/// An enrolled answer read strictly (PROTOCOL §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enrolled {
    Yes,
    No,
    /// Anything else decides nothing (never "not enrolled"); the reason says what was read.
    Undecided(String),
}

/// Reads `enrolled_response` (PROTOCOL §6): a non-empty list whose every item has `status`
/// exactly `succ` and `enrolled_status` exactly `yes` (enrolled) or exactly `no` (not enrolled),
/// all items agreeing, in an answer whose header (when it has one) says `succ`. Every other
/// shape — other spellings, booleans, objects, an empty or missing list, disagreeing items,
/// pending or rejected items — is [`Enrolled::Undecided`].
pub fn read_enrolled(reply: &Reply) -> Enrolled {
    let undecided = |why: String| Enrolled::Undecided(why);
    let (header, message) = match &reply.answer {
        Answer::Envelope { header, message } => (Some(header), message),
        Answer::Bare(message) => (None, message),
        Answer::Ack(_) => return undecided("the registry answered an ACK, not a result".into()),
    };
    if let Some(h) = header {
        match h.get("status").and_then(Value::as_str) {
            Some("succ") => {}
            Some(s) => {
                return undecided(format!(
                    "the answer's header status is '{}'",
                    reply.peer.text(s)
                ))
            }
            None => return undecided("the answer's header has no status".into()),
        }
    }
    let items = match message.get("enrolled_response") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return undecided("enrolled_response is empty".into()),
        Some(_) => return undecided("enrolled_response is not a list".into()),
        None => return undecided("the answer has no enrolled_response".into()),
    };
    let mut decided = None;
    for item in items {
        let text = |k: &str| item.get(k).and_then(Value::as_str);
        let this = match (text("status"), item.get("enrolled_status")) {
            (Some("succ"), Some(Value::String(s))) if s == "yes" => Enrolled::Yes,
            (Some("succ"), Some(Value::String(s))) if s == "no" => Enrolled::No,
            (Some("succ"), Some(other)) => {
                let shown = match other {
                    Value::String(s) => format!("'{}'", reply.peer.text(s)),
                    other => format!("a JSON {}", json_kind(other)),
                };
                return undecided(format!("enrolled_status is {shown}, not 'yes' or 'no'"));
            }
            (Some("succ"), None) => return undecided("an item has no enrolled_status".into()),
            (Some("pdng" | "rcvd"), _) => {
                return undecided("the registry's answer is pending".into())
            }
            (Some("rjct"), _) => {
                let why = text("status_reason_message")
                    .or(text("status_reason_code"))
                    .map(|t| reply.peer.text(t))
                    .unwrap_or_else(|| "rjct".into());
                return undecided(format!("the registry rejected the query ({why})"));
            }
            (Some(s), _) => {
                return undecided(format!("an item's status is '{}'", reply.peer.text(s)))
            }
            (None, _) => return undecided("an item has no status".into()),
        };
        match &decided {
            Some(d) if *d != this => return undecided("the items disagree".into()),
            _ => decided = Some(this),
        }
    }
    decided.unwrap_or_else(|| undecided("enrolled_response is empty".into()))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Keys the spec gives a search item and its `data` (what else an item holds is a known records
/// variant, or makes a zero-records answer undecided when it could hold records).
const ITEM_KEYS: [&str; 8] = [
    "reference_id",
    "timestamp",
    "status",
    "status_reason_code",
    "status_reason_message",
    "data",
    "pagination",
    "locale",
];
const DATA_KEYS: [&str; 8] = [
    "version",
    "reg_type",
    "reg_record_type",
    "reg_records",
    "pagination",
    "total_count",
    "total",
    "locale",
];
/// Where registries put records besides the spec's `data.reg_records`, in the order read.
const DATA_VARIANTS: [&str; 2] = ["records", "reg_record"];
const ITEM_VARIANTS: [&str; 2] = ["reg_records", "records"];

/// What a place that may hold records holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Records: a non-empty list of objects, or one record object.
    Records,
    /// An empty list.
    Empty,
    /// Anything else.
    Bad,
}

fn shape(v: &Value) -> Shape {
    match v {
        Value::Array(a) if a.is_empty() => Shape::Empty,
        Value::Array(a) if a.iter().all(Value::is_object) => Shape::Records,
        Value::Object(o) if !o.is_empty() => Shape::Records,
        _ => Shape::Bad,
    }
}

fn take_records(v: &mut Value) -> Vec<Value> {
    match v.take() {
        Value::Array(records) => records,
        one => vec![one],
    }
}

/// The records of a `succ` item (moved out of it), or why the item decides nothing.
///
/// Records are read wherever the spec or a known variant puts them (`data.reg_records`,
/// `data.records`, `data.reg_record`, `data` as the list itself, `reg_records`/`records` on the
/// item): found anywhere, they are the answer. Zero records only from the documented shape:
/// `data` an object, `data.reg_records` an empty list, no other place holding something that
/// could be records, and no pagination saying records exist.
fn succ_records(
    item: &mut Map<String, Value>,
    peer: &Redactor,
) -> std::result::Result<Vec<Value>, String> {
    // The places in reading order; a null variant counts as absent.
    let data_is_list = matches!(item.get("data"), Some(Value::Array(_)));
    let found = {
        let data = item.get("data").and_then(Value::as_object);
        let spec = data.and_then(|d| d.get("reg_records"));
        let mut places: Vec<(&str, Option<&Value>)> = vec![("data.reg_records", spec)];
        for k in DATA_VARIANTS {
            places.push((k, data.and_then(|d| d.get(k)).filter(|v| !v.is_null())));
        }
        places.push(("data", item.get("data").filter(|_| data_is_list)));
        for k in ITEM_VARIANTS {
            places.push((k, item.get(k).filter(|v| !v.is_null())));
        }
        let mut first = None;
        let mut bad = None;
        for (i, (name, v)) in places.iter().enumerate() {
            match v.map(shape) {
                Some(Shape::Records) if first.is_none() => first = Some(i),
                Some(Shape::Bad) if bad.is_none() => bad = Some(*name),
                _ => {}
            }
        }
        match (first, bad) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(name)) => Err(format!("{name} is not a list of records")),
            (None, None) => Ok(None),
        }
    }?;
    if let Some(i) = found {
        let place = match i {
            0 => item.get_mut("data").and_then(|d| d.get_mut("reg_records")),
            1 | 2 => item
                .get_mut("data")
                .and_then(|d| d.get_mut(DATA_VARIANTS[i - 1])),
            3 => item.get_mut("data"),
            _ => item.get_mut(ITEM_VARIANTS[i - 4]),
        };
        return Ok(place.map(take_records).unwrap_or_default());
    }
    let data = match item.get("data") {
        Some(Value::Object(d)) => d,
        Some(Value::Null) | None => return Err("a succ item without data".into()),
        Some(other) => {
            return Err(format!(
                "data is a JSON {}, not an object",
                json_kind(other)
            ))
        }
    };
    if !data.contains_key("reg_records") {
        return Err("data.reg_records is missing".into());
    }
    let holds_records = |v: &Value| match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => false,
    };
    if let Some(k) = data
        .iter()
        .find(|(k, v)| {
            !DATA_KEYS.contains(&k.as_str())
                && !DATA_VARIANTS.contains(&k.as_str())
                && holds_records(v)
        })
        .map(|(k, _)| k)
    {
        return Err(format!(
            "data.{} may hold records next to an empty reg_records",
            peer.text(k)
        ));
    }
    if let Some(k) = item
        .iter()
        .find(|(k, v)| {
            !ITEM_KEYS.contains(&k.as_str())
                && !ITEM_VARIANTS.contains(&k.as_str())
                && holds_records(v)
        })
        .map(|(k, _)| k)
    {
        return Err(format!(
            "{} may hold records next to an empty reg_records",
            peer.text(k)
        ));
    }
    more_records(item, data)?;
    Ok(vec![])
}

/// Names (lower case, without `_` and `-`) under which a registry may say how many records
/// exist: in the item, its `data` or a `pagination` of either.
const TOTAL_KEYS: [&str; 8] = [
    "totalcount",
    "total",
    "totalrecords",
    "recordcount",
    "count",
    "totalresults",
    "totalhits",
    "totalitems",
];

/// Err when a pagination (or a total) says records exist although none came back, or cannot
/// be read.
fn more_records(
    item: &Map<String, Value>,
    data: &Map<String, Value>,
) -> std::result::Result<(), String> {
    let mut places: Vec<&Map<String, Value>> = vec![item, data];
    for holder in [item, data] {
        match holder.get("pagination") {
            None | Some(Value::Null) => {}
            Some(Value::Object(p)) => places.push(p),
            Some(_) => return Err("pagination is not an object".into()),
        }
    }
    for place in places {
        for (key, value) in place {
            let name: String = key
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .collect::<String>()
                .to_ascii_lowercase();
            if !TOTAL_KEYS.contains(&name.as_str()) {
                continue;
            }
            let count = match value {
                Value::Null => continue,
                Value::Number(n) => n.as_str().parse::<f64>().ok(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match count {
                Some(c) if c.is_finite() && c > 0.0 => {
                    return Err(format!("{key} says {c} records exist but none came back"))
                }
                Some(c) if c.is_finite() && c >= 0.0 => {}
                _ => return Err(format!("{key} is not a count")),
            }
        }
    }
    Ok(())
}

/// Reads one answered item matched to `reference_id` (see [`succ_records`] for `succ`).
/// `pending`: the answer's header says it is not complete, so only pending items agree with it.
fn read_item(reference_id: &str, mut raw: Value, pending: bool, peer: &Redactor) -> ItemAnswer {
    let undecided = |raw: Value, why: String| ItemAnswer::undecided(reference_id, raw, why);
    let Value::Object(item) = &mut raw else {
        let why = format!("the item is a JSON {}, not an object", json_kind(&raw));
        return undecided(raw, why);
    };
    let status = match item.get("status") {
        Some(Value::String(s)) => match s.as_str() {
            "succ" => ItemStatus::Succ,
            "rjct" => ItemStatus::Rjct,
            "pdng" | "rcvd" => ItemStatus::Pending,
            other => {
                let why = format!(
                    "the item's status '{}' is not one of succ, rjct, pdng, rcvd",
                    peer.text(other)
                );
                return undecided(raw, why);
            }
        },
        Some(other) => {
            let why = format!("the item's status is a JSON {}", json_kind(other));
            return undecided(raw, why);
        }
        None => return undecided(raw, "the item has no status".into()),
    };
    if pending && status != ItemStatus::Pending {
        let why = format!(
            "the answer's header says pending but the item says {}",
            status.as_str()
        );
        return undecided(raw, why);
    }
    let text = |item: &Map<String, Value>, k: &str| {
        item.get(k).and_then(Value::as_str).map(|t| peer.text(t))
    };
    let (reason_code, reason_message) = (
        text(item, "status_reason_code"),
        text(item, "status_reason_message"),
    );
    let records = match status {
        ItemStatus::Succ => match succ_records(item, peer) {
            Ok(records) => records,
            Err(why) => return undecided(raw, why),
        },
        _ => vec![],
    };
    ItemAnswer {
        reference_id: reference_id.to_owned(),
        status,
        reason_code,
        reason_message,
        records,
        raw,
    }
}

/// Matches answered items to the request items (PROTOCOL §6) and reads each strictly: one
/// [`ItemAnswer`] per reference id, in request order.
///
/// Items are matched by `reference_id` only; an item without one is accepted only when exactly
/// one item was asked. An item naming a reference id that was not sent, a reference id that is
/// not a string, an unmatched item among several asked, or an answer without a
/// `search_response` list is an error: the answer is not bound to the request. Two items for one
/// reference id make it [`ItemStatus::Undecided`] (never "first wins"); a request item nobody
/// answered is [`ItemStatus::Missing`].
pub fn match_items(
    reference_ids: &[String],
    answer: Option<Value>,
    pending: bool,
    peer: &Redactor,
) -> Result<Vec<ItemAnswer>> {
    let answered = match answer {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(Error::Protocol("the answer has no search_response".into()))
        }
        Some(other) => {
            return Err(Error::Protocol(format!(
                "search_response is a JSON {}, not a list",
                json_kind(&other)
            )))
        }
    };
    let index: HashMap<&str, usize> = reference_ids
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    // None: unanswered; Some(Ok(item)); Some(Err(())): answered more than once.
    let mut slots: Vec<Option<std::result::Result<Value, ()>>> = vec![None; reference_ids.len()];
    for item in answered {
        let slot = match item.get("reference_id") {
            Some(Value::String(r)) => *index.get(r.as_str()).ok_or_else(|| {
                Error::Protocol(format!(
                    "the answer has an item for a reference_id that was not sent ({})",
                    peer.text(r)
                ))
            })?,
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "an item's reference_id is a JSON {}, not a string",
                    json_kind(other)
                )))
            }
            None if reference_ids.len() == 1 => 0,
            None => {
                return Err(Error::Protocol(format!(
                    "an item without reference_id cannot be matched: the request asked {} \
                     identifiers, matched by reference_id only",
                    reference_ids.len()
                )))
            }
        };
        slots[slot] = match slots[slot].take() {
            None => Some(Ok(item)),
            Some(_) => Some(Err(())),
        };
    }
    Ok(reference_ids
        .iter()
        .zip(slots)
        .map(|(r, slot)| match slot {
            Some(Ok(raw)) => read_item(r, raw, pending, peer),
            Some(Err(())) => ItemAnswer::without_answer(
                r,
                ItemStatus::Undecided,
                "two or more items answer this reference_id".into(),
            ),
            None => ItemAnswer::without_answer(
                r,
                ItemStatus::Missing,
                "the answer has no item for this reference_id".into(),
            ),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_error_shapes_are_read() {
        let peer = Redactor::new();
        let dci = json!({"message": {"ack_status": "ERR", "error": {"code": "err.request.bad", "message": "bad"}}});
        assert_eq!(
            error_of(&dci, &peer),
            (Some("err.request.bad".into()), Some("bad".into()))
        );
        let errors = json!({"errors": [{"code": "err.signature.invalid", "message": "nope"}]});
        assert_eq!(
            error_of(&errors, &peer).0.as_deref(),
            Some("err.signature.invalid")
        );
        let detail = json!({"detail": "Not authenticated"});
        assert_eq!(
            error_of(&detail, &peer),
            (None, Some("Not authenticated".into()))
        );
        let detail_list = json!({"detail": [{"msg": "field required"}]});
        assert_eq!(
            error_of(&detail_list, &peer).1.as_deref(),
            Some("field required")
        );
        let echo = Redactor::new().with_secret("tok-0123456789abcdef");
        let leaky = json!({"detail": {"code": "tok-0123456789abcdef", "message": "Bearer tok-0123456789abcdef"}});
        assert_eq!(
            error_of(&leaky, &echo),
            (Some("***".into()), Some("Bearer ***".into()))
        );
    }

    fn one(item: Value) -> ItemAnswer {
        let refs = vec!["a".to_string()];
        match_items(&refs, Some(json!([item])), false, &Redactor::new())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_the_documented_shape_is_zero_records() {
        let rec = json!({"member": {"name": "x"}});
        let zero = one(json!({"reference_id": "a", "status": "succ", "data": {"reg_records": []}}));
        assert_eq!((zero.status, zero.records.len()), (ItemStatus::Succ, 0));
        for found in [
            json!({"status": "succ", "data": {"reg_records": [rec]}}),
            json!({"status": "succ", "data": [rec]}),
            json!({"status": "succ", "data": {"records": [rec]}}),
            json!({"status": "succ", "data": {"reg_records": [], "reg_record": rec}}),
            json!({"status": "succ", "data": {"reg_records": null}, "records": [rec]}),
        ] {
            let item = one(found.clone());
            assert_eq!(
                (item.status, item.records.len()),
                (ItemStatus::Succ, 1),
                "{found}"
            );
        }
        for undecided in [
            json!({"status": "succ"}),
            json!({"status": "succ", "data": {}}),
            json!({"status": "succ", "data": null}),
            json!({"status": "succ", "data": []}),
            json!({"status": "succ", "data": {"reg_records": null}}),
            json!({"status": "succ", "data": {"reg_records": "[]"}}),
            json!({"status": "succ", "data": {"reg_records": 0}}),
            json!({"status": "succ", "data": {"reg_records": {}}}),
            json!({"status": "succ", "data": {"reg_records": [1]}}),
            json!({"status": "succ", "data": {"reg_records": [], "records": "x"}}),
            json!({"status": "succ", "data": {"reg_records": [], "people": [rec]}}),
            json!({"status": "succ", "data": {"reg_records": [], "people": rec}}),
            json!({"status": "succ", "data": {"reg_records": []}, "hits": [rec]}),
            json!({"status": "succ", "data": {"reg_records": []}, "pagination": {"total_count": 2}}),
            json!({"status": "succ", "data": {"reg_records": []}, "pagination": {"total_count": "2"}}),
            json!({"status": "succ", "data": {"reg_records": []}, "pagination": {"total_count": -1}}),
            json!({"status": "succ", "data": {"reg_records": []}, "pagination": {"total_count": true}}),
            json!({"status": "succ", "data": {"reg_records": []}, "pagination": []}),
            json!({"status": "succ", "data": {"reg_records": [], "total": 1}}),
            json!({"status": "succ", "data": {"reg_records": [], "pagination": {"total_count": 1}}}),
            json!({"data": {"reg_records": []}}),
            json!({"status": "SUCC", "data": {"reg_records": []}}),
            json!({"status": "ok", "data": {"reg_records": [rec]}}),
            json!({"status": null, "data": {"reg_records": []}}),
            json!({"status": ["succ"], "data": {"reg_records": []}}),
            json!("succ"),
            json!(null),
            json!([]),
        ] {
            let item = one(undecided.clone());
            assert_eq!(item.status, ItemStatus::Undecided, "{undecided}");
            assert!(item.reason_message.is_some());
        }
        let pending = json!({"status": "succ", "data": {"reg_records": []}});
        let refs = vec!["a".to_string()];
        let read = match_items(&refs, Some(json!([pending])), true, &Redactor::new()).unwrap();
        assert_eq!(
            read[0].status,
            ItemStatus::Undecided,
            "header pdng, item succ"
        );
    }

    #[test]
    fn enrolled_is_yes_or_no_exactly() {
        let read = |header: Value, items: Value| {
            read_enrolled(&Reply {
                sent: Sent::default(),
                answer: Answer::Envelope {
                    header,
                    message: json!({"transaction_id": "t", "enrolled_response": items}),
                },
                verified: true,
                peer: Redactor::new(),
            })
        };
        let item = |e: Value| json!({"reference_id": "1", "status": "succ", "enrolled_status": e});
        let succ = json!({"status": "succ"});
        assert_eq!(
            read(succ.clone(), json!([item(json!("yes"))])),
            Enrolled::Yes
        );
        assert_eq!(
            read(succ.clone(), json!([item(json!("no")), item(json!("no"))])),
            Enrolled::No
        );
        for (header, items) in [
            (succ.clone(), json!([item(json!("Yes"))])),
            (succ.clone(), json!([item(json!(false))])),
            (succ.clone(), json!([item(json!({"v": "no"}))])),
            (succ.clone(), json!([item(json!("no")), item(json!("yes"))])),
            (succ.clone(), json!([])),
            (succ.clone(), json!({"enrolled_status": "no"})),
            (
                succ.clone(),
                json!([{"status": "pdng", "enrolled_status": "no"}]),
            ),
            (succ.clone(), json!([{"enrolled_status": "no"}])),
            (json!({"status": "pdng"}), json!([item(json!("no"))])),
            (json!({}), json!([item(json!("no"))])),
        ] {
            assert!(
                matches!(read(header.clone(), items.clone()), Enrolled::Undecided(_)),
                "{header} {items}"
            );
        }
    }

    #[test]
    fn items_match_by_reference_id_only() {
        let refs = vec!["a".to_string(), "b".to_string()];
        let peer = Redactor::new();
        let zero =
            |r: &str| json!({"reference_id": r, "status": "succ", "data": {"reg_records": []}});
        let items = match_items(&refs, Some(json!([zero("b")])), false, &peer).unwrap();
        assert_eq!(
            (items[0].status, items[1].status),
            (ItemStatus::Missing, ItemStatus::Succ)
        );
        let twice = match_items(
            &refs,
            Some(json!([zero("a"), zero("a"), zero("b")])),
            false,
            &peer,
        )
        .unwrap();
        assert_eq!(
            (twice[0].status, twice[1].status),
            (ItemStatus::Undecided, ItemStatus::Succ)
        );
        for unbound in [
            json!([zero("a"), zero("zzz")]),
            json!([zero("a"), {"status": "succ", "data": {"reg_records": []}}]),
            json!([zero("a"), {"reference_id": 1, "status": "succ"}]),
            json!([zero("a"), {"reference_id": null, "status": "succ"}]),
            json!([zero("a"), "b"]),
            json!({"reference_id": "a"}),
        ] {
            let e = match_items(&refs, Some(unbound.clone()), false, &peer);
            assert!(matches!(e, Err(Error::Protocol(_))), "{unbound}");
        }
        assert!(match_items(&refs, None, false, &peer).is_err());
        let single = vec!["a".to_string()];
        let bare = json!([{"status": "rjct", "status_reason_code": "rjct.x"}]);
        let items = match_items(&single, Some(bare), false, &peer).unwrap();
        assert_eq!(items[0].status, ItemStatus::Rjct);
        assert_eq!(items[0].reason_code.as_deref(), Some("rjct.x"));
    }
}
