//! Request handling: routing, limits, faults, authentication, signatures and the IBR routes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use super::callbacks::{callback_url, CallbackJob, CallbackQueue};
use super::dataset::{Dataset, UpdateOutcome};
use super::faults::{Decision, Faults, Injected};
use super::http1::{BodyError, Request};
use super::query;
use super::spec;
use super::{ErrorStyle, SandboxConfig, Stats};
use crate::dci::canonical::{self, HeaderForm};
use crate::dci::envelope::{self, new_id, now_unix, timestamp, ResponseHeader, Signer, Status};
use crate::dci::error::Result;
use crate::dci::jwk::{to_jwk, Jwk, Jwks};
use crate::dci::keys::{Algorithm, SigningKey};
use crate::dci::replay::ReplayGuard;
use crate::dci::signature::{self, Keys, Outcome, Policy};

const REG_TYPE: &str = "ns:org:RegistryType:IBR";
const REG_RECORD_TYPE: &str = "Beneficiary";
const MAX_TXNS: usize = 10_000;
const MAX_SUBSCRIPTIONS: usize = 10_000;
const MAX_TOKENS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Token,
    Jwks,
    SyncSearch,
    Search,
    Subscribe,
    Unsubscribe,
    TxnStatus,
    SyncTxnStatus,
    SyncEnrolled,
    SyncEnrollmentUpdates,
}

impl Route {
    const ALL: [Route; 10] = [
        Route::Token,
        Route::Jwks,
        Route::SyncSearch,
        Route::Search,
        Route::Subscribe,
        Route::Unsubscribe,
        Route::TxnStatus,
        Route::SyncTxnStatus,
        Route::SyncEnrolled,
        Route::SyncEnrollmentUpdates,
    ];

    fn path(self) -> &'static str {
        match self {
            Route::Token => "/oauth2/client/token",
            Route::Jwks => "/.well-known/jwks.json",
            Route::SyncSearch => "/registry/sync/search",
            Route::Search => "/registry/search",
            Route::Subscribe => "/registry/subscribe",
            Route::Unsubscribe => "/registry/unsubscribe",
            Route::TxnStatus => "/registry/txn/status",
            Route::SyncTxnStatus => "/registry/sync/txn/status",
            Route::SyncEnrolled => "/registry/sync/enrolled",
            Route::SyncEnrollmentUpdates => "/registry/sync/enrollment/updates",
        }
    }

    fn is_registry(self) -> bool {
        !matches!(self, Route::Token | Route::Jwks)
    }

    /// `header.action` values accepted (empty: any; the spec is loose for these routes).
    fn actions(self) -> &'static [&'static str] {
        match self {
            Route::SyncSearch | Route::Search => &["search"],
            Route::Subscribe => &["subscribe"],
            Route::Unsubscribe => &["unsubscribe"],
            Route::TxnStatus | Route::SyncTxnStatus => &["txn-status", "txn/status", "txn_status"],
            _ => &[],
        }
    }
}

/// An answer to write.
enum Reply {
    Json {
        status: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    Garbage,
    Drop,
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        if let Reply::Json { headers, .. } = &mut self {
            headers.push((name, value));
        }
        self
    }
}

struct Tokens {
    live: HashMap<String, Instant>,
}

impl Tokens {
    fn issue(&mut self, lifetime: Duration) -> String {
        let now = Instant::now();
        if self.live.len() >= MAX_TOKENS {
            self.live.retain(|_, exp| *exp > now);
            if self.live.len() >= MAX_TOKENS {
                // Still full of live tokens: forget the one closest to expiry.
                if let Some(k) = self
                    .live
                    .iter()
                    .min_by_key(|(_, e)| **e)
                    .map(|(k, _)| k.clone())
                {
                    self.live.remove(&k);
                }
            }
        }
        let mut raw = [0u8; 32];
        OsRng.fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        self.live.insert(token.clone(), now + lifetime);
        token
    }

    fn valid(&self, token: &str) -> bool {
        self.live
            .get(token)
            .is_some_and(|exp| *exp > Instant::now())
    }
}

struct Txn {
    txn_type: &'static str,
    transaction_id: String,
    correlation_id: String,
    reference_ids: Vec<String>,
    /// Canonical `{"header":…,"message":…}` of the answer, when it fit in memory.
    payload: Option<String>,
    cost: usize,
}

/// Transactions seen, per sender, bounded in count and bytes (oldest forgotten first).
#[derive(Default)]
struct TxnStore {
    map: HashMap<(String, String), Txn>,
    order: VecDeque<(String, String)>,
    bytes: usize,
}

impl TxnStore {
    fn insert(&mut self, sender: &str, transaction_id: &str, mut txn: Txn, budget: usize) {
        if let Some(p) = &txn.payload {
            if p.len() > budget / 4 {
                txn.payload = None;
            }
        }
        txn.cost = 128
            + 2 * transaction_id.len()
            + txn.correlation_id.len()
            + txn
                .reference_ids
                .iter()
                .map(|r| r.len() + 24)
                .sum::<usize>()
            + txn.payload.as_ref().map_or(0, String::len);
        let key = (sender.to_owned(), transaction_id.to_owned());
        self.bytes += txn.cost;
        if let Some(old) = self.map.insert(key.clone(), txn) {
            self.bytes -= old.cost;
            self.order.retain(|k| *k != key);
        }
        self.order.push_back(key);
        while self.bytes > budget || self.map.len() > MAX_TXNS {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.map.remove(&k) {
                self.bytes -= old.cost;
            }
        }
    }

    fn find(&self, sender: &str, attribute_type: &str, value: &Value) -> Option<&Txn> {
        match (attribute_type, value) {
            ("transaction_id", Value::String(t)) => self.map.get(&(sender.to_owned(), t.clone())),
            ("correlation_id", Value::String(c)) => self
                .order
                .iter()
                .rev()
                .filter(|k| k.0 == sender)
                .filter_map(|k| self.map.get(k))
                .find(|t| t.correlation_id == *c),
            ("reference_id_list", Value::Array(refs)) => {
                let wanted: HashSet<&str> = refs.iter().filter_map(Value::as_str).collect();
                self.order
                    .iter()
                    .rev()
                    .filter(|k| k.0 == sender)
                    .filter_map(|k| self.map.get(k))
                    .find(|t| t.reference_ids.iter().any(|r| wanted.contains(r.as_str())))
            }
            _ => None,
        }
    }
}

struct Subscription {
    sender_id: String,
    /// Where its `notify` events go.
    url: String,
    /// The records it follows; a filter the sandbox cannot read follows none.
    filter: Option<query::Cond>,
    /// The subscribe request's, for the receiver to match its events.
    transaction_id: String,
}

/// State shared by the request and callback threads.
pub(super) struct Shared {
    pub cfg: SandboxConfig,
    pub prefix: String,
    pub signer: Signer,
    /// A key that is not in `jwks` (the `wrong_key_rate` fault signs with it).
    unpublished: Signer,
    pub jwks: Value,
    pub client_id: String,
    pub client_secret: String,
    /// Prefix of record placeholders (`\u{0}rec-<random>:`), see [`splice`].
    marker: String,
    pub callbacks: CallbackQueue,
    tokens: Mutex<Tokens>,
    client_keys: RwLock<HashMap<String, Jwks>>,
    replay: Mutex<ReplayGuard>,
    dataset: RwLock<Dataset>,
    faults: RwLock<Faults>,
    fault_seq: AtomicU64,
    txns: Mutex<TxnStore>,
    subscriptions: Mutex<HashMap<String, Subscription>>,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_text(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    OsRng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn normalise_prefix(prefix: &str) -> String {
    let p = prefix.trim().trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("/{p}")
    }
}

impl Shared {
    pub fn new(cfg: SandboxConfig, dataset: Dataset) -> Result<Self> {
        let key = match &cfg.signing_key {
            Some(k) => k.clone(),
            None => Arc::new(SigningKey::generate(Algorithm::Ed25519, 0)?),
        };
        let signer = Signer::new(key.clone(), &cfg.sender_id, &cfg.key_id)?;
        let jwks = json!({"keys": [to_jwk(&key.verifying_key(), Some(&signer.kid()))]});
        let unpublished = Signer::new(
            Arc::new(SigningKey::generate(Algorithm::Ed25519, 0)?),
            &cfg.sender_id,
            &format!("{}-unpublished", cfg.key_id),
        )?;
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("ibr-sandbox-{}", random_text(4)));
        let client_secret = cfg.client_secret.clone().unwrap_or_else(|| random_text(24));
        Ok(Shared {
            prefix: normalise_prefix(&cfg.prefix),
            faults: RwLock::new(cfg.faults.clone()),
            signer,
            unpublished,
            jwks,
            client_id,
            client_secret,
            marker: format!("\u{0}rec-{}:", random_text(8)),
            callbacks: CallbackQueue::default(),
            tokens: Mutex::new(Tokens {
                live: HashMap::new(),
            }),
            client_keys: RwLock::new(HashMap::new()),
            replay: Mutex::new(ReplayGuard::new(1_000_000)),
            dataset: RwLock::new(dataset),
            fault_seq: AtomicU64::new(0),
            txns: Mutex::new(TxnStore::default()),
            subscriptions: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            cfg,
        })
    }

    pub fn dataset(&self) -> RwLockReadGuard<'_, Dataset> {
        self.dataset.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register_key(&self, sender_id: &str, key: Jwk) {
        let mut keys = self.client_keys.write().unwrap_or_else(|p| p.into_inner());
        let set = &mut keys.entry(sender_id.to_owned()).or_default().keys;
        // A key registered again under the same kid replaces the old one (rotation).
        if key.kid.is_some() {
            set.retain(|k| k.kid != key.kid);
        }
        set.push(key);
    }

    pub fn stats(&self) -> Stats {
        let mut stats = lock(&self.stats).clone();
        stats.callbacks_pending = self.callbacks.pending() as u64;
        stats
    }

    pub fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    pub fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats));
    }

    fn count_fault(&self, kind: &str) {
        self.count(|s| *s.faults.entry(kind.to_owned()).or_default() += 1);
    }

    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut f = self.faults.write().unwrap_or_else(|p| p.into_inner());
        *f = faults;
        self.fault_seq.store(0, Ordering::SeqCst);
    }

    /// Seconds the sandbox's clock is off in what it sends (the `clock_skew_s` fault).
    pub fn clock_skew(&self) -> i64 {
        self.faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clock_skew_s
    }

    fn decide(&self) -> (Decision, u64) {
        let f = self.faults.read().unwrap_or_else(|p| p.into_inner());
        let seq = self.fault_seq.fetch_add(1, Ordering::SeqCst);
        (f.decide(seq), f.callback_delay_ms)
    }

    fn route(&self, path: &str) -> Option<Route> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        let rest = if rest.len() > 1 {
            rest.trim_end_matches('/')
        } else {
            rest
        };
        Route::ALL.into_iter().find(|r| r.path() == rest)
    }

    /// An error answer in the configured style.
    fn error(&self, status: u16, code: &str, message: &str) -> Reply {
        let body = match self.cfg.error_style {
            ErrorStyle::Errors => json!({"errors": [{"code": code, "message": message}]}),
            ErrorStyle::Ack => json!({"message": {
                "ack_status": "ERR",
                "timestamp": timestamp(now_unix()),
                "correlation_id": new_id(),
                "error": {"code": code, "message": message},
            }}),
            ErrorStyle::Detail => json!({"detail": {"code": code, "message": message}}),
            ErrorStyle::DetailText => json!({"detail": message}),
        };
        Reply::json(status, body.to_string())
    }

    /// `(payload, body)` of a signed envelope; record placeholders are replaced by `records`.
    fn signed(
        &self,
        header: &Value,
        message: &Value,
        bad_signature: bool,
        records: &[Arc<str>],
    ) -> Result<(String, String)> {
        let faults = Decision {
            bad_signature,
            ..Decision::NONE
        };
        self.signed_with_faults(header, message, &faults, records)
    }

    /// [`Shared::signed`] with the signing faults of `d` (bad signature, unsigned, wrong key)
    /// and the clock skew applied.
    fn signed_with_faults(
        &self,
        header: &Value,
        message: &Value,
        d: &Decision,
        records: &[Arc<str>],
    ) -> Result<(String, String)> {
        let skew = self.clock_skew();
        let now = now_unix() + skew;
        let mut shifted;
        let header = if skew != 0 && header.get("message_ts").is_some() {
            shifted = header.clone();
            shifted["message_ts"] = timestamp(now).into();
            &shifted
        } else {
            header
        };
        let mut payload = canonical::signing_payload(&header, &message, HeaderForm::AsReceived)?;
        if !records.is_empty() {
            payload = splice(&payload, &self.marker, records);
        }
        let signature = if d.unsigned {
            String::new()
        } else if d.wrong_key {
            self.unpublished.sign_payload(&payload, now)?
        } else if d.bad_signature {
            // Signs other bytes: the answer is intact but its signature does not verify.
            self.signer.sign_payload(&format!("{payload} "), now)?
        } else {
            self.signer.sign_payload(&payload, now)?
        };
        Ok((
            payload.clone(),
            envelope::body_from_payload(payload, &signature),
        ))
    }
}

/// Replaces each record placeholder — the canonical text of the string `<marker><index>`, i.e.
/// `"\u0000rec-<random>:<index>"` — by `records[index]`, the record's canonical text. The result
/// is exactly the canonical text of the message with the records in place (key order does not
/// depend on array contents), without building a JSON tree per record. The marker's random part
/// keeps request data from forging a placeholder.
fn splice(payload: &str, marker: &str, records: &[Arc<str>]) -> String {
    let mut pattern = String::with_capacity(marker.len() + 8);
    canonical::write_str(marker, &mut pattern);
    pattern.pop(); // the closing quote: the index follows
    let extra: usize = records.iter().map(|r| r.len()).sum();
    let mut out = String::with_capacity(payload.len() + extra);
    let mut rest = payload;
    while let Some(at) = rest.find(&pattern) {
        out.push_str(&rest[..at]);
        let after = &rest[at + pattern.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match (
            after[..digits].parse::<usize>(),
            after.as_bytes().get(digits),
        ) {
            (Ok(i), Some(b'"')) if i < records.len() => {
                out.push_str(&records[i]);
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_str(&pattern);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Answers one request (on its connection's thread).
pub(super) fn handle(sh: &Shared, rq: &mut Request<'_>) {
    let url = rq.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let route = sh.route(path);
    sh.count(|s| {
        *s.requests
            .entry(route.map_or("other", Route::path).to_owned())
            .or_default() += 1
    });
    let reply = match route {
        None => sh.error(404, "err.request.not_found", "no such route"),
        Some(route) => process(sh, rq, route, query),
    };
    send(sh, rq, reply);
}

fn send(sh: &Shared, rq: &mut Request<'_>, reply: Reply) {
    const JSON: (&str, &str) = ("Content-Type", "application/json");
    match reply {
        Reply::Json {
            status,
            body,
            mut headers,
        } => {
            let skew = sh.clock_skew();
            if skew != 0 {
                let date = chrono::Utc::now() + chrono::TimeDelta::seconds(skew);
                headers.push(("Date", date.format("%a, %d %b %Y %H:%M:%S GMT").to_string()));
            }
            let headers: Vec<(&str, &str)> = std::iter::once(JSON)
                .chain(headers.iter().map(|(n, v)| (*n, v.as_str())))
                .collect();
            sh.count(|s| *s.responses.entry(status).or_default() += 1);
            rq.respond(status, &headers, body.as_bytes());
        }
        Reply::Garbage => {
            sh.count(|s| *s.responses.entry(200).or_default() += 1);
            rq.respond(
                200,
                &[JSON],
                b"<html><body>502 \xff\xfe upstream garbage {\"",
            );
        }
        Reply::Drop => rq.drop_connection(),
    }
}

fn process(sh: &Shared, rq: &mut Request<'_>, route: Route, query: &str) -> Reply {
    let want = if route == Route::Jwks { "GET" } else { "POST" };
    if rq.method() != want {
        return sh
            .error(405, "err.request.bad", "method not allowed")
            .with_header("Allow", want.to_owned());
    }
    let body = match rq.read_body(sh.cfg.max_body_bytes) {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return sh.error(
                413,
                "err.request.bad",
                &format!("body larger than {} bytes", sh.cfg.max_body_bytes),
            )
        }
        Err(BodyError::LengthRequired) => {
            return sh.error(
                411,
                "err.request.bad",
                "a body needs Content-Length or chunked transfer coding",
            )
        }
        Err(BodyError::Io) => return sh.error(400, "err.request.bad", "body could not be read"),
    };
    let (decision, callback_delay_ms) = if route.is_registry() {
        sh.decide()
    } else {
        (Decision::NONE, 0)
    };
    if decision.latency_ms > 0 {
        sh.count_fault("latency");
        std::thread::sleep(Duration::from_millis(decision.latency_ms));
    }
    match decision.injected {
        Injected::None => {}
        Injected::Drop => {
            sh.count_fault("drop");
            return Reply::Drop;
        }
        Injected::Garbage => {
            sh.count_fault("garbage");
            return Reply::Garbage;
        }
        Injected::Status(status) => {
            sh.count_fault(&format!("status_{status}"));
            let (code, text) = match status {
                400 => ("err.request.bad", "injected fault: bad request"),
                401 => ("err.request.unauthorized", "injected fault: unauthorized"),
                403 => ("err.request.forbidden", "injected fault: forbidden"),
                404 => ("err.request.not_found", "injected fault: not found"),
                408 | 504 => ("err.request.timeout", "injected fault: timeout"),
                429 => (
                    "err.request.too_many_requests",
                    "injected fault: too many requests",
                ),
                _ => (
                    "err.service.unavailable",
                    "injected fault: service unavailable",
                ),
            };
            let mut reply = sh.error(status, code, text);
            if let (429 | 503, Some(after)) = (status, sh.faults().retry_after) {
                reply = reply.with_header("Retry-After", after.to_string());
            }
            return reply;
        }
    }
    let authorization = rq.header("Authorization").map(str::to_owned);
    match route {
        Route::Token => token(sh, authorization.as_deref(), query, &body),
        Route::Jwks => Reply::json(200, sh.jwks.to_string()),
        _ => registry(
            sh,
            route,
            authorization.as_deref(),
            &body,
            decision,
            callback_delay_ms,
        ),
    }
}

// ----------------------------------------------------------------------------------------------
// OAuth2 client credentials
// ----------------------------------------------------------------------------------------------

/// An `application/x-www-form-urlencoded` text (`form_urlencoded`); a repeated name keeps its
/// last value.
fn form(text: &str) -> HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// One form-encoded component (a Basic client id or secret, RFC 6749 §2.3.1).
fn form_component(s: &str) -> String {
    let pair = format!("={}", s.replace('&', "%26"));
    form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": error, "error_description": description}).to_string(),
    )
}

fn token(sh: &Shared, authorization: Option<&str>, query: &str, body: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(body);
    let mut params = if text.trim_start().starts_with('{') {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) => o
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
                .collect(),
            _ => HashMap::new(),
        }
    } else {
        form(&text)
    };
    for (k, v) in form(query) {
        params.entry(k).or_insert(v);
    }
    let grant = params.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != "client_credentials" {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    if sh.faults().refuse_tokens {
        sh.count_fault("refuse_tokens");
        sh.count(|s| s.auth_failures += 1);
        return oauth_error(401, "invalid_client", "client authentication failed")
            .with_header("WWW-Authenticate", "Basic realm=\"ibr-sandbox\"".into());
    }
    let basic = authorization.and_then(|a| {
        let (scheme, rest) = a.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((form_component(id), form_component(secret)))
    });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (
            params.get("client_id").cloned().unwrap_or_default(),
            params.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if !(same(&id, &sh.client_id) && same(&secret, &sh.client_secret)) {
        sh.count(|s| s.auth_failures += 1);
        return oauth_error(401, "invalid_client", "client authentication failed")
            .with_header("WWW-Authenticate", "Basic realm=\"ibr-sandbox\"".into());
    }
    let lifetime = sh.cfg.token_lifetime;
    let access_token = lock(&sh.tokens).issue(Duration::from_secs(lifetime));
    sh.count(|s| s.tokens_issued += 1);
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
    });
    if let Some(scope) = params.get("scope") {
        answer["scope"] = Value::String(scope.clone());
    }
    Reply::json(200, answer.to_string()).with_header("Cache-Control", "no-store".into())
}

// ----------------------------------------------------------------------------------------------
// The /registry routes: authentication, envelope, signature, then the handlers
// ----------------------------------------------------------------------------------------------

/// Deepest JSON nesting in `body` (brackets outside strings), stopping past `limit`.
fn json_depth_exceeds(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A request that passed every check.
struct Ctx<'a> {
    sh: &'a Shared,
    header: &'a Value,
    message: &'a Value,
    sender_id: &'a str,
    decision: Decision,
    callback_delay_ms: u64,
}

fn registry(
    sh: &Shared,
    route: Route,
    authorization: Option<&str>,
    body: &[u8],
    decision: Decision,
    callback_delay_ms: u64,
) -> Reply {
    if sh.cfg.require_auth {
        let token = authorization.and_then(|a| {
            let (scheme, rest) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let mut ok = token.is_some_and(|t| lock(&sh.tokens).valid(t));
        if ok && decision.bad_token {
            sh.count_fault("bad_token");
            ok = false;
        }
        if !ok {
            sh.count(|s| s.auth_failures += 1);
            let why = if token.is_none() {
                "a bearer token is required"
            } else {
                "the bearer token is invalid or expired"
            };
            return sh
                .error(401, "err.request.unauthorized", why)
                .with_header("WWW-Authenticate", "Bearer".into());
        }
    }
    if json_depth_exceeds(body, sh.cfg.max_json_depth) {
        return sh.error(
            400,
            "err.request.bad",
            &format!("JSON nested deeper than {} levels", sh.cfg.max_json_depth),
        );
    }
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return sh.error(400, "err.request.bad", "body is not JSON"),
    };
    if sh.cfg.strict {
        if let Err(v) = spec::spec().check_request(route.path(), &doc) {
            sh.count(|s| s.spec_violations += 1);
            let reason = v
                .reason_code()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return sh.error(
                400,
                v.code(),
                &format!("the request does not conform to the IBR spec: {v}{reason}"),
            );
        }
    }
    let (Some(header), Some(message)) = (
        doc.get("header").filter(|h| h.is_object()),
        doc.get("message").filter(|m| m.is_object()),
    ) else {
        return sh.error(
            400,
            "err.request.bad",
            "body must be an envelope with 'header' and 'message' objects",
        );
    };
    let field = |name: &str| {
        header
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(message_id), Some(sender_id), Some(action)) =
        (field("message_id"), field("sender_id"), field("action"))
    else {
        return sh.error(
            400,
            "err.request.bad",
            "header needs non-empty 'message_id', 'sender_id' and 'action'",
        );
    };
    let actions = route.actions();
    if !actions.is_empty() && !actions.contains(&action) {
        return sh.error(
            400,
            "err.request.bad",
            &format!(
                "action '{action}' is not valid here (expected '{}')",
                actions[0]
            ),
        );
    }
    if let Some(version) = header.get("version").filter(|v| !v.is_null()) {
        if version.as_str() != Some(envelope::VERSION) {
            return sh.error(
                400,
                "err.version.not_supported",
                &format!("header.version must be '{}'", envelope::VERSION),
            );
        }
    }
    if let Some(receiver) = field("receiver_id").filter(|_| sh.cfg.strict_receiver_id) {
        if receiver != sh.signer.sender_id() {
            return sh.error(
                400,
                "err.receiver_id.invalid",
                &format!(
                    "receiver_id '{receiver}' is not this registry ('{}')",
                    sh.signer.sender_id()
                ),
            );
        }
    }
    if header.get("is_msg_encrypted") == Some(&Value::Bool(true)) {
        return sh.error(
            400,
            "err.encryption.invalid",
            "the sandbox does not support encrypted messages",
        );
    }
    if sh.cfg.require_signatures {
        if let Err(reply) = verify(
            sh,
            doc.get("signature"),
            header,
            message,
            sender_id,
            message_id,
        ) {
            return reply;
        }
    }
    let ctx = Ctx {
        sh,
        header,
        message,
        sender_id,
        decision,
        callback_delay_ms,
    };
    let result = match route {
        Route::SyncSearch => sync_search(&ctx),
        Route::Search => async_search(&ctx),
        Route::Subscribe => subscribe(&ctx),
        Route::Unsubscribe => unsubscribe(&ctx),
        Route::TxnStatus => txn_status(&ctx, false),
        Route::SyncTxnStatus => txn_status(&ctx, true),
        Route::SyncEnrolled => enrolled(&ctx),
        Route::SyncEnrollmentUpdates => enrollment_updates(&ctx),
        Route::Token | Route::Jwks => unreachable!("not a registry route"),
    };
    result.unwrap_or_else(|_| {
        sh.error(
            500,
            "err.service.unavailable",
            "the sandbox could not build its answer",
        )
    })
}

fn verify(
    sh: &Shared,
    signature: Option<&Value>,
    header: &Value,
    message: &Value,
    sender_id: &str,
    message_id: &str,
) -> std::result::Result<(), Reply> {
    let refuse = |code: &str, why: &str| {
        sh.count(|s| s.signature_failures += 1);
        Err(sh.error(401, code, why))
    };
    let keys = sh.client_keys.read().unwrap_or_else(|p| p.into_inner());
    let Some(jwks) = keys.get(sender_id) else {
        return refuse(
            "err.sender_id.invalid",
            &format!("no key is registered for sender '{sender_id}'"),
        );
    };
    let field = match signature {
        None | Some(Value::Null) => return refuse("err.signature.missing", "signature is missing"),
        Some(Value::String(s)) if s.is_empty() => {
            return refuse("err.signature.missing", "signature is missing")
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return refuse("err.signature.invalid", "signature must be a string"),
    };
    if let Ok(params) = signature::parse_params(field) {
        if params.kid_sender().is_some_and(|k| k != sender_id) {
            return refuse(
                "err.signature.invalid",
                "the signature's kidId names another sender",
            );
        }
    }
    let now = now_unix();
    let policy = Policy::at(now);
    let Ok(mut check) = signature::check(field, &header, &message, &Keys::Set(jwks), policy) else {
        return refuse("err.signature.invalid", "signature could not be checked");
    };
    if check.outcome == Outcome::UnknownKey {
        // Keys registered without a kid (PEM) are tried in turn when no kid matched.
        for jwk in jwks.keys.iter().filter(|k| k.kid.is_none()) {
            match signature::check(field, &header, &message, &Keys::One(&jwk.key), policy) {
                Ok(c) if c.outcome == Outcome::Valid => {
                    check = c;
                    break;
                }
                Ok(c) => check = c,
                Err(_) => {}
            }
        }
    }
    drop(keys);
    if check.outcome != Outcome::Valid {
        return refuse(
            "err.signature.invalid",
            &format!("signature is {}", check.outcome.as_str()),
        );
    }
    if sh.cfg.reject_replays {
        let expires = check.expires.unwrap_or(now);
        match lock(&sh.replay).check(sender_id, message_id, expires, now) {
            Ok(true) => {}
            Ok(false) => {
                return Err(sh.error(
                    409,
                    "err.request.bad",
                    "message_id already received (rjct.message_id.duplicate)",
                ))
            }
            Err(_) => return Err(sh.error(503, "err.service.unavailable", "replay guard is full")),
        }
    }
    Ok(())
}

impl Ctx<'_> {
    fn transaction_id(&self) -> Value {
        self.message
            .get("transaction_id")
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// A signed envelope answer (action `action`, every item completed).
    fn envelope(
        &self,
        action: &str,
        status: Status,
        reason: Option<(&str, &str)>,
        total: usize,
        message: &Value,
    ) -> Result<(String, String)> {
        self.envelope_with(action, status, reason, total, message, &[])
    }

    /// [`Ctx::envelope`] with record placeholders in `message` replaced by `records`.
    fn envelope_with(
        &self,
        action: &str,
        status: Status,
        reason: Option<(&str, &str)>,
        total: usize,
        message: &Value,
        records: &[Arc<str>],
    ) -> Result<(String, String)> {
        let header = ResponseHeader {
            action,
            status,
            status_reason_code: reason.map(|r| r.0),
            status_reason_message: reason.map(|r| r.1),
            total_count: total,
            completed_count: total,
            sender_id: self.sh.signer.sender_id(),
            receiver_id: self.sender_id,
        }
        .to_value();
        for (on, kind) in [
            (self.decision.bad_signature, "bad_signature"),
            (self.decision.unsigned, "unsigned"),
            (self.decision.wrong_key, "wrong_key"),
        ] {
            if on {
                self.sh.count_fault(kind);
            }
        }
        self.sh
            .signed_with_faults(&header, message, &self.decision, records)
    }

    fn remember(
        &self,
        txn_type: &'static str,
        correlation_id: &str,
        reference_ids: Vec<String>,
        payload: Option<String>,
    ) {
        let Some(transaction_id) = self.message.get("transaction_id").and_then(Value::as_str)
        else {
            return;
        };
        lock(&self.sh.txns).insert(
            self.sender_id,
            transaction_id,
            Txn {
                txn_type,
                transaction_id: transaction_id.to_owned(),
                correlation_id: correlation_id.to_owned(),
                reference_ids,
                payload,
                cost: 0,
            },
            self.sh.cfg.txn_memory_bytes,
        );
    }

    /// The callback URL for `route` (the `sender_uri` itself with `one_callback_url`), or an
    /// error answer when `sender_uri` is unusable.
    fn callback_target(&self, route: &str) -> std::result::Result<String, Reply> {
        let bad = |why: &str| Err(self.sh.error(400, "err.sender_uri.invalid", why));
        let Some(uri) = self
            .header
            .get("sender_uri")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return bad("an asynchronous request needs a 'sender_uri' for the callback");
        };
        let url = if self.sh.cfg.one_callback_url {
            uri.to_owned()
        } else {
            callback_url(uri, route)
        };
        let Ok(parsed) = reqwest::Url::parse(&url) else {
            return bad("sender_uri is not a URL");
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return bad("sender_uri must be http or https");
        }
        let host = parsed.host_str().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback && !self.sh.cfg.allow_remote_callbacks {
            return bad("the sandbox only calls back loopback addresses");
        }
        Ok(url)
    }

    /// The spec's `Response`: `error` is omitted, never null (it is an `Error` object).
    fn ack(&self, correlation_id: &str) -> Reply {
        Reply::json(
            202,
            json!({"message": {
                "ack_status": "ACK",
                "timestamp": timestamp(now_unix()),
                "correlation_id": correlation_id,
            }})
            .to_string(),
        )
    }

    /// Queues a callback answering this request (to its sender).
    /// An async call's answers: remembered for txn status, sent to `url` as the `action`
    /// callback under `response_key`; the caller gets the ACK.
    fn answer_async(
        &self,
        mut answers: Vec<Value>,
        response_key: &str,
        kind: &'static str,
        url: String,
        action: &'static str,
        total: usize,
    ) -> Result<Reply> {
        self.scramble_references(&mut answers);
        let correlation_id = new_id();
        let message = json!({
            "transaction_id": self.transaction_id(),
            "correlation_id": correlation_id,
            response_key: answers,
        });
        let payload = canonical::value_to_string(&json!({"message": message}))?;
        self.remember(
            kind,
            &correlation_id,
            reference_list(&answers),
            Some(payload),
        );
        self.queue_callback(url, action, total, message);
        Ok(self.ack(&correlation_id))
    }

    fn queue_callback(&self, url: String, action: &'static str, total: usize, message: Value) {
        self.queue_callback_to(url, self.sender_id, action, total, message);
    }

    fn queue_callback_to(
        &self,
        url: String,
        receiver_id: &str,
        action: &'static str,
        total: usize,
        message: Value,
    ) {
        if self.callback_delay_ms > 0 {
            self.sh.count_fault("late_callback");
        }
        if self.decision.duplicate_callback {
            self.sh.count_fault("duplicate_callback");
        }
        if self.decision.bad_signature {
            self.sh.count_fault("bad_signature");
        }
        self.sh.callbacks.push(CallbackJob {
            due: Instant::now() + Duration::from_millis(self.callback_delay_ms),
            url,
            action,
            receiver_id: receiver_id.to_owned(),
            status: Status::Succ,
            total_count: total,
            completed_count: total,
            message,
            bad_signature: self.decision.bad_signature,
            duplicate: self.decision.duplicate_callback,
        });
    }

    fn scramble_references(&self, items: &mut [Value]) {
        if !self.decision.wrong_reference {
            return;
        }
        self.sh.count_fault("wrong_reference");
        for item in items {
            if let Some(obj) = item.as_object_mut() {
                obj.insert(
                    "reference_id".into(),
                    Value::String(format!("wrong-{}", new_id())),
                );
            }
        }
    }
}

fn items_of<'a>(ctx: &Ctx<'a>, name: &str) -> std::result::Result<&'a Vec<Value>, Reply> {
    match ctx.message.get(name) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(ctx.sh.error(
            400,
            "err.request.bad",
            &format!("message.{name} must be a list"),
        )),
    }
}

/// Reference ids of request items: `Ok(id)` or `Err((code, message))` for a missing or repeated one.
fn reference_ids(items: &[Value]) -> Vec<std::result::Result<String, (&'static str, String)>> {
    let mut seen = HashSet::with_capacity(items.len());
    items
        .iter()
        .map(|item| {
            let id = match item.get("reference_id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err((
                        "rjct.reference_id.invalid",
                        "reference_id is missing".to_owned(),
                    ))
                }
            };
            if !seen.insert(id.clone()) {
                return Err((
                    "rjct.reference_id.duplicate",
                    format!("reference_id '{id}' appears twice in the batch"),
                ));
            }
            Ok(id)
        })
        .collect()
}

/// The `reference_id` of the `n`th item of an answer: the request item's, as text, else `n + 1`.
fn reference_text(reference: Option<&Value>, n: usize) -> String {
    match reference {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(x)) => x.to_string(),
        _ => (n + 1).to_string(),
    }
}

fn rejected(reference: Value, ts: &str, code: &str, message: &str) -> Value {
    json!({
        "reference_id": reference,
        "timestamp": ts,
        "status": "rjct",
        "status_reason_code": code,
        "status_reason_message": message,
        "locale": "eng",
    })
}

fn page_param(p: Option<&Value>, name: &str, default: usize) -> std::result::Result<usize, String> {
    match p.and_then(|p| p.get(name)) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_f64() {
            Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= 1e9 => Ok(n as usize),
            _ => Err(format!(
                "pagination.{name} must be a whole number of at least 1"
            )),
        },
    }
}

/// The records of an answer: either placeholders spliced after canonicalisation (sync answers:
/// no JSON tree is built per record) or the records themselves (callbacks).
enum RecordsOut {
    Splice(Vec<Arc<str>>),
    Inline,
}

/// Answers the items of a `search_request`, one `search_response` item each.
fn search_items(sh: &Shared, items: &[Value], out: &mut RecordsOut) -> (Vec<Value>, usize) {
    let ds = sh.dataset();
    let ts = timestamp(now_unix());
    let mut records_returned = 0;
    let refs = reference_ids(items);
    let out = items
        .iter()
        .zip(refs)
        .map(|(item, reference)| {
            let reference = match reference {
                Ok(r) => r,
                Err((code, why)) => {
                    let raw = item.get("reference_id").cloned().unwrap_or(Value::Null);
                    return rejected(raw, &ts, code, &why);
                }
            };
            let bad =
                |code: &str, why: &str| rejected(Value::String(reference.clone()), &ts, code, why);
            let Some(criteria) = item.get("search_criteria").filter(|c| c.is_object()) else {
                return bad("rjct.search_criteria.invalid", "search_criteria is missing");
            };
            let query_type = criteria
                .get("query_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(q) = criteria.get("query") else {
                return bad(
                    "rjct.search_criteria.invalid",
                    "search_criteria.query is missing",
                );
            };
            let cond = match query::parse(&ds, query_type, q) {
                Ok(c) => c,
                Err(why) => return bad("rjct.search_criteria.invalid", &why),
            };
            let pagination = criteria.get("pagination");
            let (size, number) = match (
                page_param(pagination, "page_size", sh.cfg.max_page_size),
                page_param(pagination, "page_number", 1),
            ) {
                (Ok(s), Ok(n)) => (s.min(sh.cfg.max_page_size.max(1)), n),
                (Err(why), _) | (_, Err(why)) => return bad("rjct.pagination.invalid", &why),
            };
            let hits = cond.find(&ds);
            let start = (number - 1).saturating_mul(size).min(hits.len());
            let end = start.saturating_add(size).min(hits.len());
            let records: Vec<Value> = hits[start..end]
                .iter()
                .map(|i| match out {
                    RecordsOut::Splice(texts) => {
                        texts.push(ds.entry(*i).canonical.clone());
                        Value::String(format!("{}{}", sh.marker, texts.len() - 1))
                    }
                    RecordsOut::Inline => ds.entry(*i).record(),
                })
                .collect();
            records_returned += records.len();
            let text = |name: &str, default: &str| {
                criteria
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_owned()
            };
            json!({
                "reference_id": reference,
                "timestamp": ts,
                "status": "succ",
                "data": {
                    "version": "1.0.0",
                    "reg_type": text("reg_type", REG_TYPE),
                    "reg_record_type": text("reg_record_type", REG_RECORD_TYPE),
                    "reg_records": records,
                },
                "pagination": {"page_size": size, "page_number": number, "total_count": hits.len()},
                "locale": "eng",
            })
        })
        .collect();
    (out, records_returned)
}

fn reference_list(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| {
            i.get("reference_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

fn too_many(ctx: &Ctx<'_>, n: usize, list: &str, action: &str) -> Option<Result<Reply>> {
    if n <= ctx.sh.cfg.max_batch_items {
        return None;
    }
    let message = json!({
        "transaction_id": ctx.transaction_id(),
        "correlation_id": new_id(),
        list: [],
    });
    let why = format!(
        "{n} items; at most {} per message",
        ctx.sh.cfg.max_batch_items
    );
    Some(
        ctx.envelope(
            action,
            Status::Rjct,
            Some(("rjct.total_count.limit_exceeded", &why)),
            n,
            &message,
        )
        .map(|(_, body)| Reply::json(200, body)),
    )
}

fn sync_search(ctx: &Ctx<'_>) -> Result<Reply> {
    let items = match items_of(ctx, "search_request") {
        Ok(i) => i,
        Err(reply) => return Ok(reply),
    };
    if let Some(r) = too_many(ctx, items.len(), "search_response", "on-search") {
        return r;
    }
    let mut texts = RecordsOut::Splice(Vec::new());
    let (mut answers, records) = search_items(ctx.sh, items, &mut texts);
    ctx.sh.count(|s| {
        s.search_items += items.len() as u64;
        s.records_returned += records as u64;
    });
    ctx.scramble_references(&mut answers);
    let references = reference_list(&answers);
    let correlation_id = new_id();
    let message = json!({
        "transaction_id": ctx.transaction_id(),
        "correlation_id": correlation_id,
        "search_response": answers,
    });
    let RecordsOut::Splice(texts) = texts else {
        unreachable!("sync answers splice")
    };
    let (payload, body) = ctx.envelope_with(
        "on-search",
        Status::Succ,
        None,
        items.len(),
        &message,
        &texts,
    )?;
    ctx.remember("search", &correlation_id, references, Some(payload));
    Ok(Reply::json(200, body))
}

fn async_search(ctx: &Ctx<'_>) -> Result<Reply> {
    let items = match items_of(ctx, "search_request") {
        Ok(i) => i,
        Err(reply) => return Ok(reply),
    };
    let url = match ctx.callback_target("on-search") {
        Ok(u) => u,
        Err(reply) => return Ok(reply),
    };
    if items.len() > ctx.sh.cfg.max_batch_items {
        return Ok(ctx.sh.error(
            400,
            "err.request.bad",
            &format!(
                "{} items; at most {} per message (rjct.total_count.limit_exceeded)",
                items.len(),
                ctx.sh.cfg.max_batch_items
            ),
        ));
    }
    let (answers, records) = search_items(ctx.sh, items, &mut RecordsOut::Inline);
    ctx.sh.count(|s| {
        s.search_items += items.len() as u64;
        s.records_returned += records as u64;
    });
    ctx.answer_async(
        answers,
        "search_response",
        "search",
        url,
        "on-search",
        items.len(),
    )
}

fn subscribe(ctx: &Ctx<'_>) -> Result<Reply> {
    let items = match items_of(ctx, "subscribe_request") {
        Ok(i) => i,
        Err(reply) => return Ok(reply),
    };
    let (url, notify_url) = match (
        ctx.callback_target("on-subscribe"),
        ctx.callback_target("notify"),
    ) {
        (Ok(u), Ok(n)) => (u, n),
        (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
    };
    let transaction_id = match ctx.transaction_id() {
        Value::String(t) => t,
        _ => new_id(),
    };
    let ts = timestamp(now_unix());
    let ds = ctx.sh.dataset();
    let mut answers = Vec::with_capacity(items.len());
    for (item, reference) in items.iter().zip(reference_ids(items)) {
        let reference = match reference {
            Ok(r) => r,
            Err((code, why)) => {
                answers.push(rejected(
                    item.get("reference_id").cloned().unwrap_or(Value::Null),
                    &ts,
                    code,
                    &why,
                ));
                continue;
            }
        };
        let bad =
            |code: &str, why: &str| rejected(Value::String(reference.clone()), &ts, code, why);
        let Some(c) = item.get("subscribe_criteria").filter(|c| c.is_object()) else {
            answers.push(bad(
                "rjct.notify_details.invalid",
                "subscribe_criteria is missing",
            ));
            continue;
        };
        if c.get("reg_event_type").and_then(Value::as_str).is_none() {
            answers.push(bad(
                "rjct.notify_types.invalid",
                "subscribe_criteria.reg_event_type is missing",
            ));
            continue;
        }
        let Some(filter) = c.get("filter") else {
            answers.push(bad(
                "rjct.notify_details.invalid",
                "subscribe_criteria.filter is missing",
            ));
            continue;
        };
        if c.get("notify_record_type")
            .and_then(Value::as_str)
            .is_none()
        {
            answers.push(bad(
                "rjct.notify_details.invalid",
                "subscribe_criteria.notify_record_type is missing",
            ));
            continue;
        }
        let mut followed = None;
        if let Some(ft) = c.get("filter_type").and_then(Value::as_str) {
            if matches!(ft, "idtype-value" | "expression" | "predicate") {
                match query::parse(&ds, ft, filter) {
                    Ok(cond) => followed = Some(cond),
                    Err(why) => {
                        answers.push(bad("rjct.notify_details.invalid", &why));
                        continue;
                    }
                }
            }
        }
        let code = format!("SUB-{}", new_id());
        {
            let mut subs = lock(&ctx.sh.subscriptions);
            if subs.len() >= MAX_SUBSCRIPTIONS {
                answers.push(bad(
                    "rjct.notify_details.invalid",
                    "the sandbox holds too many subscriptions",
                ));
                continue;
            }
            subs.insert(
                code.clone(),
                Subscription {
                    sender_id: ctx.sender_id.to_owned(),
                    url: notify_url.clone(),
                    filter: followed,
                    transaction_id: transaction_id.clone(),
                },
            );
        }
        let mut info = json!({
            "version": "1.0.0",
            "code": code,
            "status": "subscribe",
            "timestamp": ts,
        });
        for key in [
            "reg_type",
            "reg_event_type",
            "frequency",
            "filter_type",
            "filter",
            "notify_record_type",
        ] {
            if let Some(v) = c.get(key) {
                info[key] = v.clone();
            }
        }
        answers.push(json!({
            "reference_id": reference,
            "timestamp": ts,
            "status": "succ",
            "subscriptions": [info],
            "locale": "eng",
        }));
    }
    drop(ds);
    ctx.answer_async(
        answers,
        "subscribe_response",
        "subscribe",
        url,
        "on-subscribe",
        items.len(),
    )
}

fn unsubscribe(ctx: &Ctx<'_>) -> Result<Reply> {
    let codes = match items_of(ctx, "subscription_codes") {
        Ok(i) => i,
        Err(reply) => return Ok(reply),
    };
    let url = match ctx.callback_target("on-unsubscribe") {
        Ok(u) => u,
        Err(reply) => return Ok(reply),
    };
    let mut removed = Vec::new();
    let mut unknown = 0usize;
    {
        let mut subs = lock(&ctx.sh.subscriptions);
        for code in codes {
            let Some(code) = code.as_str() else {
                unknown += 1;
                continue;
            };
            if subs.get(code).is_some_and(|s| s.sender_id == ctx.sender_id) {
                subs.remove(code);
                removed.push(json!({"code": code, "status": "unsubscribe"}));
            } else {
                unknown += 1;
            }
        }
    }
    let correlation_id = new_id();
    let mut message = json!({
        "transaction_id": ctx.transaction_id(),
        "correlation_id": correlation_id,
        "timestamp": timestamp(now_unix()),
        "status": if unknown == 0 { "succ" } else { "rjct" },
        "subscription_status": removed,
    });
    if unknown > 0 {
        message["status_reason_code"] = json!("rjct.subscription_code.invalid");
        message["status_reason_message"] = json!(format!(
            "{unknown} subscription code(s) unknown to this registry"
        ));
    }
    ctx.queue_callback(url, "on-unsubscribe", codes.len(), message);
    Ok(ctx.ack(&correlation_id))
}

fn txn_status(ctx: &Ctx<'_>, sync: bool) -> Result<Reply> {
    let Some(req) = ctx
        .message
        .get("txnstatus_request")
        .filter(|r| r.is_object())
    else {
        return Ok(ctx.sh.error(
            400,
            "err.request.bad",
            "message.txnstatus_request must be an object",
        ));
    };
    let attribute_type = req
        .get("attribute_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(
        attribute_type,
        "transaction_id" | "correlation_id" | "reference_id_list"
    ) {
        return Ok(ctx.sh.error(
            400,
            "err.request.bad",
            "txnstatus_request.attribute_type must be transaction_id, correlation_id or reference_id_list",
        ));
    }
    let value = req.get("attribute_value").cloned().unwrap_or(Value::Null);
    let url = if sync {
        None
    } else {
        match ctx.callback_target("txn/on-status") {
            Ok(u) => Some(u),
            Err(reply) => return Ok(reply),
        }
    };
    let found = {
        let txns = lock(&ctx.sh.txns);
        txns.find(ctx.sender_id, attribute_type, &value).map(|t| {
            let status = t
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .and_then(|mut v| v.get_mut("message").map(Value::take));
            (
                t.txn_type,
                t.transaction_id.clone(),
                t.correlation_id.clone(),
                t.reference_ids.clone(),
                status,
            )
        })
    };
    let Some((txn_type, transaction_id, correlation_id, refs, status)) = found else {
        return Ok(ctx.sh.error(
            404,
            "err.request.not_found",
            "no such transaction for this sender",
        ));
    };
    let mut status = status.unwrap_or_else(|| {
        // The answer was too large to keep: its items' statuses only.
        let ts = timestamp(now_unix());
        let items: Vec<Value> = refs
            .iter()
            .map(|r| json!({"reference_id": r, "timestamp": ts, "status": "succ"}))
            .collect();
        match txn_type {
            "receipt" => json!({"transaction_id": transaction_id, "receipt_information": {}}),
            "subscribe" => json!({"transaction_id": transaction_id,
                "correlation_id": correlation_id, "subscribe_response": items}),
            _ => json!({"transaction_id": transaction_id,
                "correlation_id": correlation_id, "search_response": items}),
        }
    });
    if let (Value::Array(wanted), Some(Value::Array(items))) =
        (&value, status.get_mut("search_response"))
    {
        items.retain(|i| i.get("reference_id").is_some_and(|r| wanted.contains(r)));
    }
    let message = json!({
        "transaction_id": ctx.transaction_id(),
        "correlation_id": correlation_id,
        "txnstatus_response": {"txn_type": txn_type, "txn_status": status},
    });
    match url {
        None => {
            let (_, body) = ctx.envelope("txn-on-status", Status::Succ, None, 1, &message)?;
            Ok(Reply::json(200, body))
        }
        Some(url) => {
            let ack_correlation = new_id();
            ctx.queue_callback(url, "txn-on-status", 1, message);
            Ok(ctx.ack(&ack_correlation))
        }
    }
}

/// The items of an EnrolledRequest: `enrolled_criteria` (object or list), or `enrolled_request`
/// (list of `{reference_id, enrolled_criteria}`).
fn enrolled_items(message: &Value) -> Option<Vec<(Option<Value>, &Value)>> {
    if let Some(Value::Array(items)) = message.get("enrolled_request") {
        return Some(
            items
                .iter()
                .map(|i| {
                    (
                        i.get("reference_id").cloned(),
                        i.get("enrolled_criteria").unwrap_or(i),
                    )
                })
                .collect(),
        );
    }
    match message.get("enrolled_criteria")? {
        c @ Value::Object(_) => Some(vec![(
            c.get("reference_id")
                .or_else(|| message.get("reference_id"))
                .cloned(),
            c,
        )]),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|i| {
                    (
                        i.get("reference_id").cloned(),
                        i.get("enrolled_criteria").unwrap_or(i),
                    )
                })
                .collect(),
        ),
        _ => None,
    }
}

fn enrolled(ctx: &Ctx<'_>) -> Result<Reply> {
    let Some(items) = enrolled_items(ctx.message) else {
        return Ok(ctx.sh.error(
            400,
            "err.request.bad",
            "message.enrolled_criteria is missing",
        ));
    };
    if let Some(r) = too_many(ctx, items.len(), "enrolled_response", "on-enrolled") {
        return r;
    }
    let ts = timestamp(now_unix());
    let ds = ctx.sh.dataset();
    let mut answers: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(n, (reference, criteria))| {
            let reference = reference_text(reference.as_ref(), n);
            let query_type = criteria.get("query_type").and_then(Value::as_str).unwrap_or("expression");
            let cond = criteria
                .get("query")
                .ok_or_else(|| "enrolled_criteria.query is missing".to_owned())
                .and_then(|q| query::parse(&ds, query_type, q));
            match cond {
                Err(why) => json!({
                    "reference_id": reference, "timestamp": ts, "status": "rjct",
                    "status_reason_code": "rjct.search_criteria.invalid", "status_reason_message": why,
                }),
                Ok(cond) => {
                    let programmes = cond.programmes();
                    let yes = cond.find(&ds).iter().any(|i| {
                        ds.entry(*i).enrolments.iter().any(|e| {
                            e.status.is_some_and(|s| s.is_current())
                                && (programmes.is_empty() || programmes.contains(&e.programme_id.as_str()))
                        })
                    });
                    json!({
                        "reference_id": reference, "timestamp": ts, "status": "succ",
                        "enrolled_status": if yes { "yes" } else { "no" },
                    })
                }
            }
        })
        .collect();
    drop(ds);
    ctx.scramble_references(&mut answers);
    let message = json!({
        "transaction_id": ctx.transaction_id(),
        "correlation_id": new_id(),
        "enrolled_response": answers,
    });
    if ctx.sh.cfg.bare_enrolled {
        return Ok(Reply::json(200, message.to_string()));
    }
    let (_, body) = ctx.envelope("on-enrolled", Status::Succ, None, items.len(), &message)?;
    Ok(Reply::json(200, body))
}

fn enrollment_updates(ctx: &Ctx<'_>) -> Result<Reply> {
    let beneficiaries = match ctx.message.get("enrolled_updates") {
        Some(Value::Object(u)) => match u.get("beneficiaries") {
            Some(Value::Array(b)) => b,
            _ => {
                return Ok(ctx.sh.error(
                    400,
                    "err.request.bad",
                    "enrolled_updates.beneficiaries must be a list",
                ))
            }
        },
        Some(Value::Array(b)) => b,
        _ => {
            return Ok(ctx.sh.error(
                400,
                "err.request.bad",
                "message.enrolled_updates is missing",
            ))
        }
    };
    if let Some(r) = too_many(
        ctx,
        beneficiaries.len(),
        "enrolled_response",
        "on-enrollment-updates",
    ) {
        return r;
    }
    let ts = timestamp(now_unix());
    let mut answers = Vec::with_capacity(beneficiaries.len());
    let mut accepted = Vec::new();
    let mut changed = Vec::new();
    {
        let mut ds = ctx.sh.dataset.write().unwrap_or_else(|p| p.into_inner());
        for (n, b) in beneficiaries.iter().enumerate() {
            let reference = reference_text(b.get("reference_id"), n);
            answers.push(match ds.apply_update(b) {
                Ok((outcome, entry)) => {
                    accepted.push(b.clone());
                    changed.push((entry, outcome.clone()));
                    json!({
                        "reference_id": reference, "timestamp": ts, "status": "succ",
                        "status_reason_message": match outcome {
                            UpdateOutcome::Added => "beneficiary added",
                            UpdateOutcome::Updated => "enrolments updated",
                        },
                    })
                }
                Err(e) => json!({
                    "reference_id": reference, "timestamp": ts, "status": "rjct",
                    "status_reason_message": e.to_string(),
                }),
            });
        }
    }
    notify(ctx, &changed);
    ctx.scramble_references(&mut answers);
    let correlation_id = new_id();
    let receipt = json!({"message": {
        "transaction_id": ctx.transaction_id(),
        "receipt_information": {"beneficiaries": accepted},
    }});
    ctx.remember(
        "receipt",
        &correlation_id,
        reference_list(&answers),
        canonical::value_to_string(&receipt).ok(),
    );
    let message = json!({
        "transaction_id": ctx.transaction_id(),
        "correlation_id": correlation_id,
        "enrolled_response": answers,
    });
    if ctx.sh.cfg.bare_enrolled {
        return Ok(Reply::json(200, message.to_string()));
    }
    let (_, body) = ctx.envelope(
        "on-enrollment-updates",
        Status::Succ,
        None,
        beneficiaries.len(),
        &message,
    )?;
    Ok(Reply::json(200, body))
}

/// Sends each subscription that follows a changed record a `notify` callback
/// (`NotifyEventRequest`), one event per changed record it follows: `enrollement` for a new
/// beneficiary, `enrollement_status_change` for an update (the spec's spelling).
fn notify(ctx: &Ctx<'_>, changed: &[(u32, UpdateOutcome)]) {
    if changed.is_empty() {
        return;
    }
    let ts = timestamp(now_unix());
    let ds = ctx.sh.dataset();
    let subs = lock(&ctx.sh.subscriptions);
    for sub in subs.values() {
        let Some(filter) = &sub.filter else { continue };
        let events: Vec<Value> = changed
            .iter()
            .filter(|(i, _)| (*i as usize) < ds.len() && filter.matches(ds.entry(*i)))
            .map(|(i, outcome)| {
                json!({
                    "reference_id": new_id(),
                    "timestamp": ts,
                    "data": {
                        "version": "1.0.0",
                        "reg_type": REG_TYPE,
                        "reg_event_type": match outcome {
                            UpdateOutcome::Added => "enrollement",
                            UpdateOutcome::Updated => "enrollement_status_change",
                        },
                        "reg_record_type": REG_RECORD_TYPE,
                        "reg_records": ds.entry(*i).record(),
                    },
                    "locale": "eng",
                })
            })
            .collect();
        if events.is_empty() {
            continue;
        }
        let total = events.len();
        let message = json!({"transaction_id": sub.transaction_id, "notify_event": events});
        ctx.queue_callback_to(sub.url.clone(), &sub.sender_id, "notify", total, message);
    }
}

// ----------------------------------------------------------------------------------------------
// Callback delivery
// ----------------------------------------------------------------------------------------------

/// The loop of one callback thread: signs each due callback at send time and POSTs it.
pub(super) fn deliver_callbacks(sh: &Shared, client: &reqwest::blocking::Client) {
    while let Some(job) = sh.callbacks.next() {
        let header = ResponseHeader {
            action: job.action,
            status: job.status,
            status_reason_code: None,
            status_reason_message: None,
            total_count: job.total_count,
            completed_count: job.completed_count,
            sender_id: sh.signer.sender_id(),
            receiver_id: &job.receiver_id,
        }
        .to_value();
        let body = match sh.signed(&header, &job.message, job.bad_signature, &[]) {
            Ok((_, body)) => body,
            Err(_) => {
                sh.count(|s| s.callbacks_failed += 1);
                continue;
            }
        };
        let times = if job.duplicate { 2 } else { 1 };
        for _ in 0..times {
            let ok = client
                .post(&job.url)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .is_ok_and(|r| r.status().is_success());
            sh.count(|s| {
                if ok {
                    s.callbacks_sent += 1
                } else {
                    s.callbacks_failed += 1
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_records_give_the_canonical_text_of_the_whole() {
        let marker = "\u{0}rec-abc:";
        let records = [json!({"b": 1, "a": "Zoë"}), json!([1.5, null])];
        let texts: Vec<Arc<str>> = records
            .iter()
            .map(|r| canonical::value_to_string(r).unwrap().into())
            .collect();
        let with_marks =
            json!({"z": [format!("{marker}1"), format!("{marker}0")], "a": "x\u{0}rec-abc:9"});
        let whole = json!({"z": [records[1], records[0]], "a": "x\u{0}rec-abc:9"});
        let spliced = splice(
            &canonical::value_to_string(&with_marks).unwrap(),
            marker,
            &texts,
        );
        assert_eq!(spliced, canonical::value_to_string(&whole).unwrap());
    }

    #[test]
    fn forms_and_depth() {
        let f = form("grant_type=client_credentials&client_id=a%2Bb&client_secret=x+y%3D&bad=%zz");
        assert_eq!(f["client_id"], "a+b");
        assert_eq!(f["client_secret"], "x y=");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(form_component("a%2Bb+c&d=e"), "a+b c&d=e");
        assert_eq!(form_component(""), "");
        assert!(json_depth_exceeds(b"[[[[1]]]]", 3));
        assert!(!json_depth_exceeds(br#"{"a":"[[[[[[["}"#, 3));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
