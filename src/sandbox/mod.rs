//! The embedded IBR sandbox: a real HTTP/1.1 server on the loopback interface that speaks the
//! registry side of the DCI IBR API, for tests, demos and benchmarks.
//!
//! ```no_run
//! use spp_dci_ibr::sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::default()).unwrap();
//! println!("registry at {}, token at {}", sandbox.url(), sandbox.token_url());
//! ```
//!
//! Routes (under the optional prefix): `POST /oauth2/client/token`, `GET /.well-known/jwks.json`,
//! `POST /registry/sync/search`, `/registry/search`, `/registry/subscribe`,
//! `/registry/unsubscribe`, `/registry/txn/status`, `/registry/sync/txn/status`,
//! `/registry/sync/enrolled`, `/registry/sync/enrollment/updates`. Every `/registry/*` call
//! needs a bearer token from the token endpoint and a valid signature from a registered client
//! key (each switchable). Everything the sandbox sends is signed with its own key, published
//! at the JWKS route. Async answers go to the request's `sender_uri` by [`callback_url`] (or,
//! with [`SandboxConfig::one_callback_url`], all to that one URL).
//!
//! Strict mode (the default) checks every `/registry/*` request against the IBR spec's request
//! schema of its route ([`spec`]) and refuses one that does not conform with HTTP 400 and the
//! spec's error code for the part at fault ([`spec::Violation::code`]; the message names the
//! place, what is wrong, and the status reason code where the spec has one), so that every test
//! that talks to the sandbox checks conformance for free.
//!
//! Each connection has its own thread (`http1.rs`; heads parsed by `httparse`, the rest of the
//! framing in `wire.rs`), which handles its requests one after the
//! other; the server threads never call back into the embedding program (nor into Python).

mod callbacks;
pub mod dataset;
pub mod faults;
mod http1;
pub mod query;
mod server;
/// The spec validator lives in the core ([`crate::dci::spec`]); re-exported for the sandbox's users.
pub use crate::dci::spec;
#[doc(hidden)]
pub mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

pub use callbacks::callback_url;
pub use dataset::{Dataset, EnrolmentStatus, Sample, CSV_COLUMNS};
pub use faults::{Decision, Faults, Injected, SplitMix64};

use crate::dci::error::{Error, Result};
use crate::dci::jwk::Jwk;
use crate::dci::keys::SigningKey;

/// Where the records come from.
#[derive(Clone, Debug)]
pub enum DatasetSource {
    /// `count` beneficiaries generated from `seed` ([`dataset::synthetic_record`]).
    Synthetic { count: usize, seed: u64 },
    /// Records in the spec's `Beneficiary` shape.
    Records(Vec<Value>),
    /// JSON text: a list of records or `{"reg_records": [...]}`.
    Json(String),
    /// CSV text with the columns of [`CSV_COLUMNS`].
    Csv(String),
    /// A file: CSV when its name ends in `.csv`, JSON otherwise.
    File(PathBuf),
}

impl DatasetSource {
    fn load(&self) -> Result<Dataset> {
        match self {
            DatasetSource::Synthetic { count, seed } => Ok(Dataset::synthetic(*count, *seed)),
            DatasetSource::Records(r) => Dataset::from_records(r),
            DatasetSource::Json(t) => Dataset::from_json(t),
            DatasetSource::Csv(t) => Dataset::from_csv(t),
            DatasetSource::File(p) => Dataset::from_file(p),
        }
    }
}

/// The body shape of error answers (PROTOCOL §6 reads all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"errors": [{"code": "err.…", "message": "…"}]}` (the spec's HttpErrorResponse).
    Errors,
    /// `{"message": {"ack_status": "ERR", "timestamp", "correlation_id", "error": {"code", "message"}}}`.
    Ack,
    /// `{"detail": {"code": "err.…", "message": "…"}}`.
    Detail,
    /// `{"detail": "…"}` (FastAPI's default; no code).
    DetailText,
}

impl ErrorStyle {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "errors" => ErrorStyle::Errors,
            "ack" => ErrorStyle::Ack,
            "detail" => ErrorStyle::Detail,
            "detail_text" => ErrorStyle::DetailText,
            _ => return None,
        })
    }
}

/// Everything a sandbox can be told. [`SandboxConfig::default`] is a protocol-faithful registry
/// of 100 synthetic beneficiaries on a random loopback port.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub host: String,
    /// 0: a free port chosen by the system.
    pub port: u16,
    /// Path prefix of every route, e.g. `/ibr` (empty: none).
    pub prefix: String,
    /// The registry's `sender_id` (in its headers and kid).
    pub sender_id: String,
    pub key_id: String,
    /// The registry's signing key; a new Ed25519 key when None.
    pub signing_key: Option<Arc<SigningKey>>,
    /// OAuth2 client credentials; generated when None.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `expires_in` of issued tokens, seconds (0: tokens that are already expired, for tests).
    pub token_lifetime: u64,
    pub require_auth: bool,
    pub require_signatures: bool,
    /// Refuse a repeated `(sender_id, message_id)` while its signature is live (409).
    pub reject_replays: bool,
    /// Refuse requests that do not validate against the spec's request schema of their route
    /// (400, see [`spec::Violation`]). On by default; off to send non-conforming bodies on
    /// purpose.
    pub strict: bool,
    /// Post every callback of a request (`on-search`, `on-subscribe`, `on-unsubscribe`,
    /// `txn-on-status`, and the `notify` events of a subscription) to its `sender_uri` exactly as
    /// given, as many registries do, instead of the route of each action ([`callback_url`]).
    pub one_callback_url: bool,
    /// Refuse a `header.receiver_id` other than `sender_id` (400 `err.receiver_id.invalid`).
    /// Off by default: clients often derive it from the registry's host name.
    pub strict_receiver_id: bool,
    /// Largest `page_size` honoured (and the default page size).
    pub max_page_size: usize,
    /// Most items in one envelope; more is rejected with `rjct.total_count.limit_exceeded`.
    pub max_batch_items: usize,
    /// Answer `sync/enrolled` and `sync/enrollment/updates` with the bare message, no envelope.
    pub bare_enrolled: bool,
    pub error_style: ErrorStyle,
    pub dataset: DatasetSource,
    pub faults: Faults,
    /// Threads delivering callbacks.
    pub callback_workers: usize,
    /// Allow callbacks to hosts other than loopback (off: a test cannot reach the network).
    pub allow_remote_callbacks: bool,
    pub callback_timeout: Duration,
    /// Memory for remembered transactions (for txn status), bytes.
    pub txn_memory_bytes: usize,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            host: "127.0.0.1".into(),
            port: 0,
            prefix: String::new(),
            sender_id: "ibr.sandbox.local".into(),
            key_id: "sandbox-key-1".into(),
            signing_key: None,
            client_id: None,
            client_secret: None,
            token_lifetime: 3600,
            require_auth: true,
            require_signatures: true,
            reject_replays: true,
            strict: true,
            one_callback_url: false,
            strict_receiver_id: false,
            max_page_size: 100,
            max_batch_items: 5000,
            bare_enrolled: false,
            error_style: ErrorStyle::Errors,
            dataset: DatasetSource::Synthetic {
                count: 100,
                seed: 0,
            },
            faults: Faults::none(),
            callback_workers: 2,
            allow_remote_callbacks: false,
            callback_timeout: Duration::from_secs(10),
            txn_memory_bytes: 16 << 20,
            max_body_bytes: 1 << 20,
            max_json_depth: 64,
        }
    }
}

/// Counters since start (or since [`Sandbox::reset_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests by route path (without prefix); unknown paths count as `other`.
    pub requests: BTreeMap<String, u64>,
    /// Answers by HTTP status (dropped connections are not answers, nor are the refusals of
    /// requests that cannot be parsed, whose head is over 64 KiB, or that come on a connection
    /// beyond the 512th).
    pub responses: BTreeMap<u16, u64>,
    /// Injected faults by kind: `latency`, `drop`, `garbage`, `status_<code>`,
    /// `bad_signature`, `unsigned`, `wrong_key`, `bad_token`, `refuse_tokens`,
    /// `wrong_reference`, `duplicate_callback`, `late_callback`.
    pub faults: BTreeMap<String, u64>,
    /// Search items answered (sync and async).
    pub search_items: u64,
    pub records_returned: u64,
    pub tokens_issued: u64,
    pub auth_failures: u64,
    pub signature_failures: u64,
    /// Requests refused in strict mode for not conforming to the spec.
    pub spec_violations: u64,
    pub callbacks_sent: u64,
    pub callbacks_failed: u64,
    /// Callbacks still waiting when the sandbox stopped.
    pub callbacks_discarded: u64,
    /// Callbacks queued and not yet sent (at the time of the snapshot).
    pub callbacks_pending: u64,
}

impl Stats {
    pub fn requests_total(&self) -> u64 {
        self.requests.values().sum()
    }

    pub fn to_value(&self) -> Value {
        let responses: serde_json::Map<String, Value> = self
            .responses
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "requests": self.requests,
            "requests_total": self.requests_total(),
            "responses": responses,
            "faults": self.faults,
            "search_items": self.search_items,
            "records_returned": self.records_returned,
            "tokens_issued": self.tokens_issued,
            "auth_failures": self.auth_failures,
            "signature_failures": self.signature_failures,
            "spec_violations": self.spec_violations,
            "callbacks_sent": self.callbacks_sent,
            "callbacks_failed": self.callbacks_failed,
            "callbacks_discarded": self.callbacks_discarded,
            "callbacks_pending": self.callbacks_pending,
        })
    }
}

/// A running sandbox. [`Sandbox::stop`] (or dropping it) stops accepting, closes the
/// connections, joins the connection and callback threads and frees the port.
pub struct Sandbox {
    shared: Arc<server::Shared>,
    /// None once stopped.
    http: Option<http1::Server>,
    callback_threads: Vec<JoinHandle<()>>,
    port: u16,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("url", &self.url())
            .field("sender_id", &self.shared.signer.sender_id())
            .field("running", &self.is_running())
            .finish()
    }
}

impl Sandbox {
    /// Loads the dataset, binds the port and starts the threads.
    pub fn start(config: SandboxConfig) -> Result<Sandbox> {
        let dataset = config.dataset.load()?;
        let addr = format!("{}:{}", config.host, config.port);
        let cannot = |e: &dyn std::fmt::Display| {
            Error::Config(format!("sandbox cannot listen on {addr}: {e}"))
        };
        let listener = std::net::TcpListener::bind(&addr).map_err(|e| cannot(&e))?;
        let port = listener.local_addr().map_err(|e| cannot(&e))?.port();
        let client = reqwest::blocking::Client::builder()
            .timeout(config.callback_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("sandbox cannot build its HTTP client: {e}")))?;
        let callback_workers = config.callback_workers.max(1);
        if config.strict {
            spec::spec(); // loaded now rather than in the first request
        }
        let shared = Arc::new(server::Shared::new(config, dataset)?);
        let handler = shared.clone();
        let http = http1::Server::start(listener, move |rq| server::handle(&handler, rq))
            .map_err(|e| Error::Config(format!("cannot start a sandbox thread: {e}")))?;
        let callback_threads = (0..callback_workers)
            .map(|n| {
                let (shared, client) = (shared.clone(), client.clone());
                std::thread::Builder::new()
                    .name(format!("ibr-sandbox-cb-{n}"))
                    .spawn(move || server::deliver_callbacks(&shared, &client))
                    .map_err(|e| Error::Config(format!("cannot start a sandbox thread: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sandbox {
            shared,
            http: Some(http),
            callback_threads,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.http.is_some()
    }

    /// Base URL, prefix included (`http://127.0.0.1:PORT/ibr`).
    pub fn url(&self) -> String {
        let host = &self.shared.cfg.host;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        format!("http://{host}:{}{}", self.port, self.shared.prefix)
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/client/token", self.url())
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url())
    }

    pub fn sender_id(&self) -> &str {
        self.shared.signer.sender_id()
    }

    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The OAuth2 client secret (keep it out of logs).
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// The sandbox's own public keys, `{"keys": [...]}`.
    pub fn public_jwks(&self) -> Value {
        self.shared.jwks.clone()
    }

    /// Trusts `key` for envelopes whose `header.sender_id` is `sender_id` (in addition to the
    /// keys already registered for it). A key with a kid is chosen by the signature's kid; when
    /// no kid matches, a sender's single key, or else each of its keys registered without a kid
    /// (from a PEM), is tried.
    pub fn register_client_key(&self, sender_id: &str, key: Jwk) {
        self.shared.register_key(sender_id, key);
    }

    /// Every record, in dataset order.
    pub fn records(&self) -> Vec<Value> {
        self.shared.dataset().records()
    }

    /// See [`Dataset::sample_identifiers`].
    pub fn sample_identifiers(&self, class: Sample, n: usize) -> Vec<(String, String)> {
        self.shared.dataset().sample_identifiers(class, n)
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults; the fault sequence starts again at request 0.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Stops accepting requests, closes every connection, joins the threads and frees the
    /// port. Callbacks still waiting are discarded (counted in `callbacks_discarded`).
    /// Idempotent.
    ///
    /// A client holding an idle keep-alive connection sees it closed at once (its next request
    /// fails with a connection error, it does not wait for its timeout). A request being
    /// handled is finished first, but its answer is lost.
    pub fn stop(&mut self) {
        let Some(mut http) = self.http.take() else {
            return;
        };
        http.stop();
        let discarded = self.shared.callbacks.stop();
        self.shared
            .count(|s| s.callbacks_discarded += discarded as u64);
        for t in self.callback_threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}
