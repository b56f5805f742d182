//! The DCI client (PROTOCOL §5–6): builds and signs every request envelope, sends it over one
//! pooled connection with OAuth2, retries and backoff, and reads every answer shape — verifying
//! signed answers, turning error bodies into typed errors.

use std::time::Duration;

use log::debug;
use serde_json::{json, Map, Value};

use super::auth::Auth;
use super::envelope::{
    envelope_body, new_id, now_unix, request_header, timestamp, with_null_sender_uri,
    ResponseHeader, Signer, Status, VERSION,
};
use super::error::{Error, Result};
use super::http::{describe, read_limited, HttpSettings, LazyClient};
use super::keys::SigningKey;
use super::keysource::RegistryKeys;
use super::signature::{self, Outcome, Policy};

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
}

/// What was sent: ids the caller needs to match answers and callbacks.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    pub message_id: String,
    pub transaction_id: String,
    pub reference_ids: Vec<String>,
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
    /// A (verified, when keys are configured) envelope.
    Envelope {
        header: Value,
        message: Value,
    },
    Ack(Ack),
    /// A bare message without envelope (some registries' enrolled answers).
    Bare(Value),
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub sent: Sent,
    pub answer: Answer,
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
    Succ,
    Rjct,
    Pending,
    /// The answer carried no item for this request item.
    Missing,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Succ => "succ",
            ItemStatus::Rjct => "rjct",
            ItemStatus::Pending => "pdng",
            ItemStatus::Missing => "missing",
        }
    }
}

/// One search item's answer, matched to its request item.
#[derive(Clone, Debug)]
pub struct ItemAnswer {
    pub reference_id: String,
    pub status: ItemStatus,
    pub reason_code: Option<String>,
    pub reason_message: Option<String>,
    pub records: Vec<Value>,
    pub raw: Value,
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
        let mut attempt = 0u32;
        let mut renewed = false;
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
            let answer = self.read_answer(endpoint, status, &body, &what)?;
            let mut sent = sent;
            sent.message_id = message_id;
            return Ok(Reply { sent, answer });
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) {
        let exp = self.retry.backoff.saturating_mul(1u32 << attempt.min(16));
        let base = retry_after.unwrap_or(exp).min(self.retry.max_backoff);
        // Up to 25% jitter so that many clients do not retry in step.
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
        std::thread::sleep(base + base.mul_f64(f64::from(jitter) / 4000.0));
    }

    fn read_answer(
        &self,
        endpoint: Endpoint,
        status: u16,
        body: &[u8],
        what: &str,
    ) -> Result<Answer> {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if !(200..300).contains(&status) {
            let (code, message) = json.as_ref().map(error_of).unwrap_or((None, None));
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
            return self.read_envelope(obj, what);
        }
        if let Some(Value::Object(msg)) = obj.get("message") {
            if msg.contains_key("ack_status") {
                return read_ack(msg, what).map(Answer::Ack);
            }
        }
        if !endpoint.is_async()
            && (obj.contains_key("enrolled_response") || obj.contains_key("transaction_id"))
        {
            return Ok(Answer::Bare(Value::Object(obj)));
        }
        Err(Error::Protocol(format!(
            "{what}: the answer is neither a DCI envelope nor an ACK"
        )))
    }

    fn read_envelope(&self, mut obj: Map<String, Value>, what: &str) -> Result<Answer> {
        let header = obj.remove("header").unwrap_or_default();
        let message = obj.remove("message").unwrap_or_default();
        let sig = obj
            .get("signature")
            .and_then(Value::as_str)
            .unwrap_or_default();
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
                    check.kid.as_deref().unwrap_or("none")
                )));
            }
            let sender = header.get("sender_id").and_then(Value::as_str);
            let kid_sender = check.kid.as_deref().and_then(|k| k.split('|').next());
            if kid_sender.is_some() && sender.is_some() && kid_sender != sender {
                return Err(Error::Signature(format!(
                    "{what}: the answer's kid does not belong to its sender_id"
                )));
            }
        }
        if header.get("status").and_then(Value::as_str) == Some("rjct") {
            return Err(Error::Registry {
                code: header
                    .get("status_reason_code")
                    .and_then(Value::as_str)
                    .map(short),
                message: header
                    .get("status_reason_message")
                    .and_then(Value::as_str)
                    .map(short)
                    .unwrap_or_else(|| format!("{what}: the registry rejected the request")),
            });
        }
        Ok(Answer::Envelope { header, message })
    }

    /// A sync search of many items in one envelope (`total_count` = items); answers are matched
    /// back by `reference_id` (positionally only when none is echoed and the counts match).
    pub fn search_batch(
        &self,
        criteria: Vec<Value>,
        transaction_id: Option<String>,
    ) -> Result<(Sent, Vec<ItemAnswer>)> {
        let (sent, message) = self.search_message(criteria, transaction_id);
        let count = sent.reference_ids.len();
        let reply = self.send(Endpoint::SyncSearch, message, count, sent)?;
        let Answer::Envelope { mut message, .. } = reply.answer else {
            return Err(Error::Protocol(
                "sync search answered without an envelope".into(),
            ));
        };
        if let Some(txn) = message.get("transaction_id").and_then(Value::as_str) {
            if txn != reply.sent.transaction_id {
                return Err(Error::Protocol(
                    "sync search answer belongs to another transaction".into(),
                ));
            }
        }
        let answered = message.get_mut("search_response").map(Value::take);
        let items = match_items(&reply.sent.reference_ids, answered);
        Ok((reply.sent, items))
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

    fn search_message(
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

fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

/// `(code, message)` of any of the three error body shapes (PROTOCOL §6).
fn error_of(body: &Value) -> (Option<String>, Option<String>) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(short);
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
        Some(Value::String(s)) => (None, Some(short(s))),
        Some(Value::Object(d)) => (text(d.get("code")), text(d.get("message"))),
        Some(Value::Array(a)) => (
            None,
            a.first()
                .and_then(|d| d.get("msg"))
                .and_then(Value::as_str)
                .map(short),
        ),
        _ => (None, None),
    }
}

fn read_ack(msg: &Map<String, Value>, what: &str) -> Result<Ack> {
    let status = msg
        .get("ack_status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ack = Ack {
        ack_status: if status.eq_ignore_ascii_case("rcvd") {
            "ACK".into()
        } else {
            short(status).to_ascii_uppercase()
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
        let (code, message) = error_of(&json!({"message": msg}));
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
                    short(status)
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

/// Reads one answered item: its status and records (`data.reg_records`, or a bare list).
fn read_item(reference_id: &str, mut raw: Value) -> ItemAnswer {
    let text = |raw: &Value, k: &str| raw.get(k).and_then(Value::as_str).map(short);
    let status = match raw.get("status").and_then(Value::as_str) {
        Some("succ") => ItemStatus::Succ,
        Some("rjct") => ItemStatus::Rjct,
        Some("pdng") | Some("rcvd") => ItemStatus::Pending,
        // No status at all: read as success only if data is present (lenient registries).
        None if raw.get("data").is_some() => ItemStatus::Succ,
        _ => ItemStatus::Rjct,
    };
    // The records move out of the item (`raw` keeps the rest): they are the bulk of an answer.
    let records = match raw.get_mut("data") {
        Some(Value::Object(d)) => match d.get_mut("reg_records").map(Value::take) {
            Some(Value::Array(r)) => r,
            Some(o @ Value::Object(_)) => vec![o],
            _ => vec![],
        },
        Some(data @ Value::Array(_)) => match data.take() {
            Value::Array(r) => r,
            _ => vec![],
        },
        _ => vec![],
    };
    let mut reason_code = text(&raw, "status_reason_code");
    if status == ItemStatus::Rjct && reason_code.is_none() {
        reason_code = text(&raw, "status");
    }
    ItemAnswer {
        reference_id: reference_id.to_owned(),
        status,
        reason_code,
        reason_message: text(&raw, "status_reason_message"),
        records,
        raw,
    }
}

/// Matches answered items to request items by `reference_id`; positionally only when the
/// registry echoes none and the counts match. Unanswered request items are `Missing`.
pub fn match_items(reference_ids: &[String], answer: Option<Value>) -> Vec<ItemAnswer> {
    let answered: Vec<Value> = match answer {
        Some(Value::Array(a)) => a,
        Some(v @ Value::Object(_)) => vec![v],
        _ => vec![],
    };
    let ref_of = |a: &Value| {
        a.get("reference_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let echoed = answered.iter().any(|a| ref_of(a).is_some());
    let positional = !echoed && answered.len() == reference_ids.len();
    let mut slots: Vec<Option<Value>> = answered.into_iter().map(Some).collect();
    let mut by_ref: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    if echoed {
        for (i, a) in slots.iter().enumerate() {
            if let Some(r) = a.as_ref().and_then(ref_of) {
                by_ref.entry(r).or_insert(i);
            }
        }
    }
    reference_ids
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let slot = if positional {
                Some(i)
            } else {
                by_ref.get(r.as_str()).copied()
            };
            match slot.and_then(|s| slots.get_mut(s)).and_then(Option::take) {
                Some(raw) => read_item(r, raw),
                None => ItemAnswer {
                    reference_id: r.clone(),
                    status: ItemStatus::Missing,
                    reason_code: None,
                    reason_message: Some("the answer has no item for this reference_id".into()),
                    records: vec![],
                    raw: Value::Null,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_error_shapes_are_read() {
        let dci = json!({"message": {"ack_status": "ERR", "error": {"code": "err.request.bad", "message": "bad"}}});
        assert_eq!(
            error_of(&dci),
            (Some("err.request.bad".into()), Some("bad".into()))
        );
        let errors = json!({"errors": [{"code": "err.signature.invalid", "message": "nope"}]});
        assert_eq!(
            error_of(&errors).0.as_deref(),
            Some("err.signature.invalid")
        );
        let detail = json!({"detail": "Not authenticated"});
        assert_eq!(error_of(&detail), (None, Some("Not authenticated".into())));
        let detail_list = json!({"detail": [{"msg": "field required"}]});
        assert_eq!(error_of(&detail_list).1.as_deref(), Some("field required"));
    }

    #[test]
    fn items_match_by_reference_id_then_positionally() {
        let refs = vec!["a".to_string(), "b".to_string()];
        let answer = json!([
            {"reference_id": "b", "status": "succ", "data": {"reg_records": [{"x": 1}]}},
            {"reference_id": "zzz", "status": "succ"},
        ]);
        let items = match_items(&refs, Some(answer));
        assert_eq!(items[0].status, ItemStatus::Missing);
        assert_eq!(items[1].status, ItemStatus::Succ);
        assert_eq!(items[1].records.len(), 1);
        let bare = json!([{"status": "rjct", "status_reason_code": "rjct.x"}, {"status": "succ", "data": [{"y": 2}]}]);
        let items = match_items(&refs, Some(bare));
        assert_eq!(items[0].status, ItemStatus::Rjct);
        assert_eq!(items[0].reason_code.as_deref(), Some("rjct.x"));
        assert_eq!(items[1].records, vec![json!({"y": 2})]);
        let short_answer = json!([{"status": "succ"}]);
        assert!(match_items(&refs, Some(short_answer))
            .iter()
            .all(|i| i.status == ItemStatus::Missing));
    }
}
