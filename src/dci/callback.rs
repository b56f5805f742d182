//! Receiving a DCI callback (PROTOCOL §3, §8): every check between the raw request body and a
//! verified message, in one function, [`verify`].
//!
//! The order is chosen so that the work done before the sender is known is small, bounded and
//! linear in the body: size, media type, strict JSON, envelope shape, route, then the signature
//! parameters (length first, one linear parse), the kid, and the time window. Only then is the
//! key lookup called — once — and only then may keys be read, fetched (a JWKS URL, through the
//! process-wide cache) or used. What was verified is what is returned: when the header verified
//! in an OpenSPP-normalised form, [`Verified::header`] is that form.
//!
//! The replay check is the caller's (its store may be a database): [`Verified`] carries the
//! `sender_id`, `message_id` and signature expiry it needs.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::canonical::{self, HeaderForm};
use super::error::{Error, Result};
use super::jwk::{Jwk, Jwks};
use super::keys::{Algorithm, VerifyingKey};
use super::keysource::RegistryKeys;
use super::signature::{self, Outcome, Policy, SignatureParams};
use super::strict_json;

/// The five callbacks of the IBR spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    OnSearch,
    OnSubscribe,
    OnUnsubscribe,
    Notify,
    TxnOnStatus,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::OnSearch,
        Action::OnSubscribe,
        Action::OnUnsubscribe,
        Action::Notify,
        Action::TxnOnStatus,
    ];

    /// The `header.action` of this callback.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::OnSearch => "on-search",
            Action::OnSubscribe => "on-subscribe",
            Action::OnUnsubscribe => "on-unsubscribe",
            Action::Notify => "notify",
            Action::TxnOnStatus => "txn-on-status",
        }
    }

    /// The path of its route below the receiver's prefix.
    pub fn path(self) -> &'static str {
        match self {
            Action::OnSearch => "/on-search",
            Action::OnSubscribe => "/on-subscribe",
            Action::OnUnsubscribe => "/on-unsubscribe",
            Action::Notify => "/notify",
            Action::TxnOnStatus => "/txn/on-status",
        }
    }

    pub fn parse(action: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == action)
    }
}

/// The path, below the receiver's prefix, of the route that takes every callback action (for
/// registries that post every callback to the one `sender_uri` they were given).
pub const ANY_ACTION_PATH: &str = "/callback";

/// Which callbacks a route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Only(Action),
    /// Any of the five, dispatched on `header.action`.
    Any,
}

/// A receiver's limits and time rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Deepest nesting of arrays and objects, the envelope itself counting as one.
    pub max_depth: usize,
    /// Clock skew allowed for `created`, in seconds.
    pub max_skew: i64,
    /// Longest signature lifetime (`expires - created`) accepted, in seconds.
    pub max_lifetime: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_depth: 64,
            max_skew: 60,
            max_lifetime: 3600,
        }
    }
}

impl Limits {
    /// Checks the limits: a positive body size, a depth from 1 to
    /// [`strict_json::MAX_DEPTH`], a non-negative skew, a positive lifetime.
    pub fn validate(self) -> Result<Self> {
        let fail = |what: &str| Err(Error::Config(what.to_owned()));
        if self.max_body_bytes == 0 {
            return fail("max_body_bytes must be a positive integer");
        }
        if !(1..=strict_json::MAX_DEPTH).contains(&self.max_depth) {
            return Err(Error::Config(format!(
                "max_depth must be between 1 and {}",
                strict_json::MAX_DEPTH
            )));
        }
        if self.max_skew < 0 {
            return fail("max_skew must be a non-negative integer");
        }
        if self.max_lifetime < 1 {
            return fail("max_lifetime must be a positive integer");
        }
        Ok(self)
    }
}

/// Why a callback is refused; each kind has its HTTP status and the spec's `err.*` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The body is larger than the limit.
    TooLarge,
    /// Not a JSON envelope of the required shape, or not for this route.
    Malformed,
    /// The key lookup does not know `header.sender_id`.
    UnknownSender,
    /// No signature (absent, null or empty).
    SignatureMissing,
    /// The signature is malformed, names another sender, is outside its time window, has no
    /// configured key, or does not verify.
    SignatureInvalid,
}

impl RefusalKind {
    pub fn status(self) -> u16 {
        match self {
            RefusalKind::TooLarge => 413,
            RefusalKind::Malformed => 400,
            RefusalKind::UnknownSender
            | RefusalKind::SignatureMissing
            | RefusalKind::SignatureInvalid => 401,
        }
    }

    /// The spec's `Error.code` (it has none for a body too large: `err.request.bad`).
    pub fn code(self) -> &'static str {
        match self {
            RefusalKind::TooLarge | RefusalKind::Malformed => "err.request.bad",
            RefusalKind::UnknownSender => "err.sender_id.invalid",
            RefusalKind::SignatureMissing => "err.signature.missing",
            RefusalKind::SignatureInvalid => "err.signature.invalid",
        }
    }
}

/// A refused callback: what to answer. The message is for the sender; it names the rule that
/// failed and never carries key material or the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
    /// The signature's outcome, for [`RefusalKind::SignatureInvalid`].
    pub outcome: Option<Outcome>,
    /// `header.sender_id` and `header.message_id` when the envelope could be read, cut to 128
    /// characters: for logs.
    pub sender_id: Option<String>,
    pub message_id: Option<String>,
}

impl Refusal {
    fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Refusal {
            kind,
            message: message.into(),
            outcome: None,
            sender_id: None,
            message_id: None,
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Refusal::new(
            RefusalKind::TooLarge,
            format!("request body larger than {limit} bytes"),
        )
    }

    fn malformed(message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Malformed, message)
    }

    fn signature(outcome: Outcome, detail: Option<&str>) -> Self {
        let text = detail.unwrap_or(match outcome {
            Outcome::Invalid => "the signature does not match the header and message",
            Outcome::Expired => "the signature has expired",
            Outcome::NotYetValid => "the signature's created time is in the future",
            Outcome::LifetimeTooLong => "the signature's lifetime is longer than accepted",
            Outcome::Malformed => "the signature field cannot be parsed",
            Outcome::UnknownKey => "no configured key of this sender has this kidId",
            Outcome::Valid => "",
        });
        Refusal {
            outcome: Some(outcome),
            ..Refusal::new(
                RefusalKind::SignatureInvalid,
                format!("signature {}: {text}", outcome.as_str()),
            )
        }
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

/// One configured public key (or set) of a sender, as a key lookup gives it. Keys are read
/// only when they are candidates for the signature's kid.
pub enum KeyMaterial {
    /// A PEM public key. It has no kid: it is tried only as the sender's only key.
    Pem(Vec<u8>),
    /// A JWK, or a JWKS document (`{"keys": [...]}`).
    Json(Value),
    /// A parsed JWKS.
    Set(Arc<Jwks>),
    /// The keys published at a JWKS URL ([`RegistryKeys::Url`]), through the process-wide cache
    /// (refetched on a kid miss at most once a minute). Consulted only when no other key of the
    /// sender has the signature's kid.
    Url(Arc<RegistryKeys>),
}

/// A callback that passed every check of [`verify`]: well-formed, for this route, signed by a
/// configured key of its sender, within its time window. Not yet checked for replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub action: Action,
    pub sender_id: String,
    pub message_id: String,
    /// The signature's full kid.
    pub kid: String,
    /// The signature's expiry (Unix seconds): remember the message_id until then.
    pub expires: i64,
    /// The header form that verified.
    pub form: HeaderForm,
    /// The header as verified: as received, or normalised when that form verified.
    pub header: Value,
    pub message: Value,
    /// `message.transaction_id` / `correlation_id` when they are non-empty strings.
    pub transaction_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The `reference_id`s of the message's items, in order, without repeats.
    pub reference_ids: Vec<String>,
}

/// What [`verify`] decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Accepted(Box<Verified>),
    Refused(Refusal),
}

/// The key lookup: `(header.sender_id, the signature's kid)` → the sender's keys, or `None` for
/// an unknown sender. An error is the lookup's own failure (a server error, not a refusal).
pub trait KeyLookup: FnOnce(&str, Option<&str>) -> Result<Option<Vec<KeyMaterial>>> {}
impl<F: FnOnce(&str, Option<&str>) -> Result<Option<Vec<KeyMaterial>>>> KeyLookup for F {}

/// Answers a refusal from a function returning `Result<Verdict>`.
macro_rules! refuse {
    ($refusal:expr) => {
        return Ok(Verdict::Refused($refusal))
    };
}

/// Checks one received callback, in this order (the first failure decides):
///
/// 1. the body is at most `max_body_bytes` (413);
/// 2. `content_type` is JSON (`application/json` or `application/*+json`, charset UTF-8 if any);
/// 3. the body is strict JSON ([`strict_json`]: UTF-8, depth, no duplicate keys, no `NaN`,
///    bounded numbers, no unpaired surrogates);
/// 4. the envelope: an object with `header` and `message` objects, `signature` a string when
///    present; `header.message_id`, `sender_id` and `action` non-empty strings;
/// 5. `header.action` is the route's, or (route [`Route::Any`]) one of the five callbacks;
/// 6. when signed: the field is at most [`signature::MAX_FIELD_BYTES`] and parses; it has a kid
///    of the form `<sender_id>|<key_id>|<alg>` naming `header.sender_id`; its algorithm,
///    lifetime, `created` and `expires` pass [`SignatureParams::precheck`] (401 invalid);
/// 7. `lookup(sender_id, kid)` knows the sender (401 `err.sender_id.invalid`) — called once;
/// 8. a signature is present (401 `err.signature.missing`);
/// 9. a candidate key: those whose kid is the signature's, else the sender's only key; a JWKS
///    URL is consulted only when no other key has the kid (401 unknown key);
/// 10. the signature verifies with a candidate, in at most three header forms (401 invalid).
///
/// 1–6 are linear in the body and need no key. An error is a failure on our side: the lookup
/// failed, or none of the candidate keys could be read.
pub fn verify(
    body: &[u8],
    content_type: Option<&str>,
    route: Route,
    limits: &Limits,
    now: i64,
    lookup: impl KeyLookup,
) -> Result<Verdict> {
    if body.len() > limits.max_body_bytes {
        refuse!(Refusal::too_large(limits.max_body_bytes));
    }
    if let Err(why) = check_content_type(content_type) {
        refuse!(Refusal::malformed(why));
    }
    let envelope = match strict_json::parse(body, limits.max_depth) {
        Ok(doc) => Envelope::read(doc, route),
        Err(why) => Err(Refusal::malformed(why)),
    };
    let envelope = match envelope {
        Ok(e) => e,
        Err(refusal) => refuse!(refusal),
    };
    let (sender_id, message_id) = (clip(&envelope.sender_id), clip(&envelope.message_id));
    let (sender_id, message_id) = (sender_id.to_owned(), message_id.to_owned());
    Ok(match verify_envelope(envelope, limits, now, lookup)? {
        Verdict::Refused(refusal) => Verdict::Refused(Refusal {
            sender_id: Some(sender_id),
            message_id: Some(message_id),
            ..refusal
        }),
        accepted => accepted,
    })
}

/// Steps 6 to 10 of [`verify`].
fn verify_envelope(
    envelope: Envelope,
    limits: &Limits,
    now: i64,
    lookup: impl KeyLookup,
) -> Result<Verdict> {
    let policy = Policy {
        now,
        max_skew: limits.max_skew,
        max_lifetime: limits.max_lifetime,
    };
    let signed = match envelope
        .signature
        .as_deref()
        .map(|f| precheck(f, &envelope, policy))
    {
        None => None,
        Some(Ok(signed)) => Some(signed),
        Some(Err(refusal)) => refuse!(refusal),
    };
    let kid = signed
        .as_ref()
        .map(|(params, _)| params.kid.as_deref().unwrap_or_default());
    let Some(keys) = lookup(&envelope.sender_id, kid)? else {
        refuse!(Refusal::new(
            RefusalKind::UnknownSender,
            "unknown sender_id"
        ));
    };
    let Some((params, alg)) = signed else {
        refuse!(Refusal::new(
            RefusalKind::SignatureMissing,
            "the callback is not signed"
        ));
    };
    let kid = params.kid.clone().unwrap_or_default();
    let candidates = candidates(&keys, &kid);
    if candidates.is_empty() {
        refuse!(Refusal::signature(Outcome::UnknownKey, None));
    }
    let tried = candidates.len();
    let mut unreadable = 0;
    for candidate in candidates {
        let key = match candidate {
            Ok(key) => key,
            Err(e) => {
                // A configuration problem on our side, not the sender's: log it, try the next.
                log::error!(
                    "a configured key of callback sender {:?} cannot be read: {e}",
                    clip(&envelope.sender_id)
                );
                unreadable += 1;
                continue;
            }
        };
        // The key's own algorithm decides, not the kid's text: a mismatch cannot verify.
        if key.algorithm() != alg {
            continue;
        }
        let header = &envelope.header;
        let message = &envelope.message;
        if let Some(form) = signature::verify_forms(&params, &header, &message, &key)? {
            return Ok(Verdict::Accepted(Box::new(envelope.accept(
                kid,
                params.expires,
                form,
            )?)));
        }
    }
    if unreadable == tried {
        return Err(Error::InvalidKey(
            "no configured key of the callback's sender could be read".into(),
        ));
    }
    refuse!(Refusal::signature(Outcome::Invalid, None))
}

/// Step 6 of [`verify`]: the signature field alone, before any key.
fn precheck(
    field: &str,
    envelope: &Envelope,
    policy: Policy,
) -> std::result::Result<(SignatureParams, Algorithm), Refusal> {
    let params = signature::parse_params(field)
        .map_err(|detail| Refusal::signature(Outcome::Malformed, Some(&detail)))?;
    let Some(kid) = params.kid.as_deref() else {
        return Err(Refusal::signature(
            Outcome::Malformed,
            Some("the signature has no kidId"),
        ));
    };
    if signature::split_kid(kid).is_none_or(|(sender, _, _)| sender != envelope.sender_id) {
        return Err(Refusal::signature(
            Outcome::Invalid,
            Some("the signature's kidId does not name header.sender_id"),
        ));
    }
    let alg = params
        .precheck(Some(&envelope.sender_id), policy)
        .map_err(|r| Refusal::signature(r.outcome, r.detail.as_deref()))?;
    Ok((params, alg))
}

/// The parts of a callback body [`verify`] reads.
struct Envelope {
    signature: Option<String>,
    header: Value,
    message: Value,
    action: Action,
    sender_id: String,
    message_id: String,
}

impl Envelope {
    /// Steps 4 and 5 of [`verify`].
    fn read(doc: Value, route: Route) -> std::result::Result<Self, Refusal> {
        let Value::Object(mut body) = doc else {
            return Err(Refusal::malformed("the body must be a JSON object"));
        };
        let header = match body.remove("header") {
            Some(h @ Value::Object(_)) => h,
            _ => return Err(Refusal::malformed("header must be an object")),
        };
        let message = match body.remove("message") {
            Some(m @ Value::Object(_)) => m,
            _ => return Err(Refusal::malformed("message must be an object")),
        };
        let signature = match body.remove("signature") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(Refusal::malformed("signature must be a string")),
        };
        let field = |name: &str| match header.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(Refusal::malformed(format!(
                "header.{name} must be a non-empty string"
            ))),
        };
        let message_id = field("message_id")?;
        let sender_id = field("sender_id")?;
        let named = field("action")?;
        let action = match (route, Action::parse(&named)) {
            (Route::Only(expected), Some(action)) if action == expected => action,
            (Route::Only(expected), _) => {
                return Err(Refusal::malformed(format!(
                    "header.action does not match this route; expected '{}'",
                    expected.as_str()
                )))
            }
            (Route::Any, Some(action)) => action,
            (Route::Any, None) => {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                return Err(Refusal::malformed(format!(
                    "header.action is not a callback action; expected one of {}",
                    known.join(", ")
                )));
            }
        };
        Ok(Envelope {
            signature,
            header,
            message,
            action,
            sender_id,
            message_id,
        })
    }

    /// The verified callback: the header in the form that verified.
    fn accept(self, kid: String, expires: i64, form: HeaderForm) -> Result<Verified> {
        let header = match form {
            HeaderForm::AsReceived => self.header,
            _ => normalised_header(&self.header, form)?,
        };
        let text = |name: &str| match self.message.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        Ok(Verified {
            action: self.action,
            transaction_id: text("transaction_id"),
            correlation_id: text("correlation_id"),
            reference_ids: reference_ids(&self.message),
            sender_id: self.sender_id,
            message_id: self.message_id,
            kid,
            expires,
            form,
            header,
            message: self.message,
        })
    }
}

/// The header exactly as it was hashed in `form`: read back from the canonical text, so that
/// nothing the signature did not cover survives.
fn normalised_header(header: &Value, form: HeaderForm) -> Result<Value> {
    let empty = Value::Object(Map::new());
    let payload = canonical::signing_payload(&header, &&empty, form)?;
    let mut doc: Value = serde_json::from_str(&payload).map_err(|e| Error::Json(e.to_string()))?;
    Ok(doc["header"].take())
}

/// Media type `application/json` or `application/<subtype>+json`; a charset, if any, UTF-8.
fn check_content_type(value: Option<&str>) -> std::result::Result<(), &'static str> {
    const NOT_JSON: &str = "Content-Type must be application/json";
    let mut parts = value.ok_or(NOT_JSON)?.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let subtype_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.-".contains(&b))
    };
    let is_json = media == "application/json"
        || media
            .strip_prefix("application/")
            .and_then(|s| s.strip_suffix("+json"))
            .is_some_and(subtype_ok);
    if !is_json {
        return Err(NOT_JSON);
    }
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err("the body must be UTF-8 encoded JSON");
            }
        }
    }
    Ok(())
}

/// One configured key, not read yet.
enum Entry<'a> {
    Pem(&'a [u8]),
    Jwk(&'a Value),
    Key(&'a Jwk),
    /// A JWKS document that could not be read.
    Unreadable(String),
}

impl Entry<'_> {
    fn kid(&self) -> Option<&str> {
        match self {
            Entry::Jwk(v) => v.get("kid").and_then(Value::as_str),
            Entry::Key(j) => j.kid.as_deref(),
            Entry::Pem(_) | Entry::Unreadable(_) => None,
        }
    }

    fn read(&self) -> Result<VerifyingKey> {
        match self {
            Entry::Pem(pem) => VerifyingKey::from_pem(pem),
            Entry::Jwk(v) => Ok(Jwk::from_value(v)?.key),
            Entry::Key(j) => Ok(j.key.clone()),
            Entry::Unreadable(why) => Err(Error::InvalidKey(why.clone())),
        }
    }
}

fn is_jwks(value: &Value) -> bool {
    value.get("keys").is_some()
}

/// Step 9 of [`verify`] (PROTOCOL §3): the keys whose kid is `kid`; where none has it, the
/// sender's only key. A JWKS URL is consulted only when no other key has the kid. Each candidate
/// is read here; an unreadable one is an error in the list.
fn candidates(material: &[KeyMaterial], kid: &str) -> Vec<Result<VerifyingKey>> {
    let documents: Vec<Option<Result<Jwks>>> = material
        .iter()
        .map(|m| match m {
            KeyMaterial::Json(v) if is_jwks(v) => Some(Jwks::from_value(v)),
            _ => None,
        })
        .collect();
    let mut fetched: Vec<Jwk> = Vec::new();
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for (m, document) in material.iter().zip(&documents) {
        match (m, document) {
            (_, Some(Ok(set))) => entries.extend(set.keys.iter().map(Entry::Key)),
            (_, Some(Err(e))) => entries.push(Entry::Unreadable(e.to_string())),
            (KeyMaterial::Pem(pem), None) => entries.push(Entry::Pem(pem)),
            (KeyMaterial::Json(v), None) => entries.push(Entry::Jwk(v)),
            (KeyMaterial::Set(set), None) => entries.extend(set.keys.iter().map(Entry::Key)),
            (KeyMaterial::Url(_), None) => {}
        }
    }
    if !entries.iter().any(|e| e.kid() == Some(kid)) {
        for m in material {
            if let KeyMaterial::Url(source) = m {
                match source.with_keys(Some(kid), |keys| match keys {
                    signature::Keys::Set(set) => Ok(set.keys.clone()),
                    signature::Keys::One(key) => Ok(vec![Jwk {
                        kid: None,
                        key: (*key).clone(),
                    }]),
                }) {
                    Ok(keys) => fetched.extend(keys),
                    Err(e) => log::warn!("callback keys from a JWKS URL unavailable: {e}"),
                }
            }
        }
    }
    entries.extend(fetched.iter().map(Entry::Key));
    let matching: Vec<&Entry<'_>> = entries.iter().filter(|e| e.kid() == Some(kid)).collect();
    let chosen = match (matching.is_empty(), entries.as_slice()) {
        (false, _) => matching,
        (true, [only]) => vec![only],
        (true, _) => Vec::new(),
    };
    chosen.into_iter().map(Entry::read).collect()
}

/// The `reference_id`s of the items of `search_response`, `subscribe_response`,
/// `unsubscribe_response`, `notify_event` and `txnstatus_response` (and the spellings seen in
/// the wild), a TxnStatusResponse's nested `txn_status` included; in order, without repeats.
fn reference_ids(message: &Value) -> Vec<String> {
    const LISTS: [&str; 6] = [
        "search_response",
        "subscribe_response",
        "unsubscribe_response",
        "notify_event",
        "txnstatus_response",
        "txn_status_response",
    ];
    fn collect<'a>(container: &'a Value, depth: usize, found: &mut IndexSet<'a>) {
        if depth > 2 {
            return;
        }
        for name in LISTS {
            let items = match container.get(name) {
                Some(Value::Array(items)) => items.as_slice(),
                Some(item @ Value::Object(_)) => std::slice::from_ref(item),
                _ => continue,
            };
            for item in items {
                if let Some(Value::String(r)) = item.get("reference_id") {
                    if !r.is_empty() && found.seen.insert(r) {
                        found.order.push(r);
                    }
                }
                if let Some(nested) = item.get("txn_status") {
                    collect(nested, depth + 1, found);
                }
            }
        }
    }
    #[derive(Default)]
    struct IndexSet<'a> {
        seen: HashSet<&'a str>,
        order: Vec<&'a str>,
    }
    let mut found = IndexSet::default();
    collect(message, 0, &mut found);
    found.order.into_iter().map(str::to_owned).collect()
}

/// An untrusted value cut for a log line.
fn clip(value: &str) -> &str {
    match value.char_indices().nth(128) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde_json::json;

    use super::*;
    use crate::dci::jwk::to_jwk;
    use crate::dci::keys::SigningKey;

    const NOW: i64 = 1_767_225_600;
    const SENDER: &str = "ibr.example.org";

    struct Fixture {
        key: SigningKey,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                key: SigningKey::generate(Algorithm::Ed25519, 0).unwrap(),
            }
        }

        fn header(&self, action: &str) -> Value {
            json!({
                "version": "1.0.0", "message_id": "m-1", "message_ts": "2026-01-01T00:00:00Z",
                "action": action, "status": "succ", "sender_id": SENDER, "receiver_id": "sp",
                "total_count": 1, "completed_count": 1, "is_msg_encrypted": false, "meta": {},
            })
        }

        /// A body signed over `signed_header`, sent with `sent_header`.
        fn body(&self, signed_header: &Value, sent_header: &Value, message: &Value) -> Vec<u8> {
            let sig = signature::sign(&signed_header, &message, &self.key, SENDER, "k1", NOW, 300)
                .unwrap();
            serde_json::to_vec(
                &json!({"signature": sig, "header": sent_header, "message": message}),
            )
            .unwrap()
        }

        fn keys(&self) -> Vec<KeyMaterial> {
            let kid = format!("{SENDER}|k1|ed25519");
            vec![KeyMaterial::Json(to_jwk(
                &self.key.verifying_key(),
                Some(&kid),
            ))]
        }

        fn verify(&self, body: &[u8], route: Route, lookups: &Cell<usize>) -> Verdict {
            verify(
                body,
                Some("application/json"),
                route,
                &Limits::default(),
                NOW,
                |sender: &str, _kid: Option<&str>| {
                    lookups.set(lookups.get() + 1);
                    Ok((sender == SENDER).then(|| self.keys()))
                },
            )
            .unwrap()
        }
    }

    fn refused(verdict: Verdict) -> Refusal {
        match verdict {
            Verdict::Refused(r) => r,
            Verdict::Accepted(v) => panic!("accepted: {v:?}"),
        }
    }

    fn accepted(verdict: Verdict) -> Verified {
        match verdict {
            Verdict::Accepted(v) => *v,
            Verdict::Refused(r) => panic!("refused: {r:?}"),
        }
    }

    #[test]
    fn each_action_on_its_route_and_on_the_any_route() {
        let fx = Fixture::new();
        let lookups = Cell::new(0);
        for action in Action::ALL {
            let header = fx.header(action.as_str());
            let message = json!({"transaction_id": "t", "search_response": [
                {"reference_id": "r1"}, {"reference_id": "r2"}, {"reference_id": "r1"}]});
            let body = fx.body(&header, &header, &message);
            for route in [Route::Only(action), Route::Any] {
                let v = accepted(fx.verify(&body, route, &lookups));
                assert_eq!(v.action, action);
                assert_eq!((v.sender_id.as_str(), v.expires), (SENDER, NOW + 300));
                assert_eq!(v.form, HeaderForm::AsReceived);
                assert_eq!(v.header, header);
                assert_eq!(v.reference_ids, ["r1", "r2"]);
                assert_eq!(v.transaction_id.as_deref(), Some("t"));
                assert_eq!(v.correlation_id, None);
            }
            let other = Action::ALL.into_iter().find(|a| *a != action).unwrap();
            let r = refused(fx.verify(&body, Route::Only(other), &lookups));
            assert_eq!((r.status(), r.code()), (400, "err.request.bad"));
        }
        let header = fx.header("search");
        let body = fx.body(&header, &header, &json!({}));
        let r = refused(fx.verify(&body, Route::Any, &lookups));
        assert!(r.message.contains("not a callback action"), "{r:?}");
        assert_eq!(
            lookups.get(),
            10,
            "one lookup per accepted callback, none for refusals"
        );
    }

    #[test]
    fn downstream_sees_the_header_form_that_verified() {
        let fx = Fixture::new();
        let lookups = Cell::new(0);
        let message = json!({});
        // Signed as OpenSPP dumps it (defaults filled, nulls dropped); sent without the defaults
        // and with a null member the signature did not cover.
        let mut signed = fx.header("on-search");
        let mut sent = signed.clone();
        let h = sent.as_object_mut().unwrap();
        h.remove("version");
        h.remove("is_msg_encrypted");
        h.insert("status_reason_code".into(), Value::Null);
        let v = accepted(fx.verify(&fx.body(&signed, &sent, &message), Route::Any, &lookups));
        assert_eq!(v.form, HeaderForm::DefaultsDropNulls);
        assert_eq!(v.header, signed);
        assert!(v.header.get("status_reason_code").is_none());
        // Signed with the null kept: that form verifies and keeps it.
        signed["status_reason_code"] = Value::Null;
        let v = accepted(fx.verify(&fx.body(&signed, &sent, &message), Route::Any, &lookups));
        assert_eq!(v.form, HeaderForm::DefaultsKeepNulls);
        assert_eq!(v.header, signed);
    }

    #[test]
    fn nothing_costly_happens_before_the_sender_is_known() {
        let fx = Fixture::new();
        let lookups = Cell::new(0);
        let header = fx.header("on-search");
        let good = fx.body(&header, &header, &json!({}));
        let with_signature = |field: &str| {
            let mut doc: Value = serde_json::from_slice(&good).unwrap();
            doc["signature"] = field.into();
            serde_json::to_vec(&doc).unwrap()
        };
        for (field, outcome) in [
            ("a".repeat(16 * 1024), Outcome::Malformed),
            ("kidId=\"x".repeat(2000), Outcome::Malformed),
            (
                format!("kidId=\"other|k1|ed25519\", algorithm=\"ed25519\", created=\"{NOW}\", expires=\"{NOW}\", signature=\"AAAA\""),
                Outcome::Invalid,
            ),
            (
                "kidId=\"ibr.example.org|k1|ed25519\", algorithm=\"ed25519\", created=\"1\", expires=\"2\", signature=\"AAAA\"".into(),
                Outcome::Expired,
            ),
        ] {
            let r = refused(fx.verify(&with_signature(&field), Route::Any, &lookups));
            assert_eq!(r.outcome, Some(outcome), "{r:?}");
        }
        let r = refused(fx.verify(
            &with_signature(&"a".repeat(16 * 1024)),
            Route::Any,
            &lookups,
        ));
        assert!(r.message.contains("longer than 4096 bytes"), "{r:?}");
        assert_eq!(lookups.get(), 0);
    }

    #[test]
    fn unknown_senders_and_missing_signatures() {
        let fx = Fixture::new();
        let lookups = Cell::new(0);
        let mut header = fx.header("notify");
        header["sender_id"] = "stranger".into();
        let body = fx.body(&header, &header, &json!({}));
        // The kid names SENDER, the header "stranger": refused before the lookup.
        assert_eq!(
            refused(fx.verify(&body, Route::Any, &lookups)).outcome,
            Some(Outcome::Invalid)
        );
        assert_eq!(lookups.get(), 0);
        let unsigned =
            serde_json::to_vec(&json!({"header": header, "message": {}, "signature": ""})).unwrap();
        let r = refused(fx.verify(&unsigned, Route::Any, &lookups));
        assert_eq!((r.status(), r.code()), (401, "err.sender_id.invalid"));
        header["sender_id"] = SENDER.into();
        let unsigned = serde_json::to_vec(&json!({"header": header, "message": {}})).unwrap();
        let r = refused(fx.verify(&unsigned, Route::Any, &lookups));
        assert_eq!((r.status(), r.code()), (401, "err.signature.missing"));
        assert_eq!(lookups.get(), 2);
    }

    #[test]
    fn candidate_keys() {
        let fx = Fixture::new();
        let other = SigningKey::generate(Algorithm::Ed25519, 0).unwrap();
        let header = fx.header("on-search");
        let body = fx.body(&header, &header, &json!({}));
        let run = |keys: Vec<KeyMaterial>| {
            verify(
                &body,
                Some("application/json"),
                Route::Any,
                &Limits::default(),
                NOW,
                |_: &str, _: Option<&str>| Ok(Some(keys)),
            )
        };
        let pem = |k: &SigningKey| KeyMaterial::Pem(k.verifying_key().public_pem().unwrap().into());
        let jwk =
            |k: &SigningKey, kid: &str| KeyMaterial::Json(to_jwk(&k.verifying_key(), Some(kid)));
        let kid = format!("{SENDER}|k1|ed25519");
        // The only key is tried whatever its kid; of two keys, only the one with the kid.
        assert!(matches!(run(vec![pem(&fx.key)]), Ok(Verdict::Accepted(_))));
        assert!(matches!(
            run(vec![jwk(&other, "x"), jwk(&fx.key, &kid)]),
            Ok(Verdict::Accepted(_))
        ));
        let unknown = run(vec![pem(&fx.key), pem(&other)]).unwrap();
        assert_eq!(refused(unknown).outcome, Some(Outcome::UnknownKey));
        let wrong = run(vec![jwk(&other, &kid)]).unwrap();
        assert_eq!(refused(wrong).outcome, Some(Outcome::Invalid));
        // A JWKS document; an unreadable configured key is our error, not the sender's.
        let doc = json!({"keys": [to_jwk(&fx.key.verifying_key(), Some(&kid))]});
        assert!(matches!(
            run(vec![KeyMaterial::Json(doc)]),
            Ok(Verdict::Accepted(_))
        ));
        let broken = KeyMaterial::Pem(
            b"-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----\n".to_vec(),
        );
        assert!(matches!(run(vec![broken]), Err(Error::InvalidKey(_))));
    }

    #[test]
    fn shape_and_media_type() {
        let fx = Fixture::new();
        let lookups = Cell::new(0);
        for (body, says) in [
            (&b"[]"[..], "JSON object"),
            (br#"{"header": {}, "message": {}}"#, "header.message_id"),
            (br#"{"header": [], "message": {}}"#, "header must be"),
            (br#"{"header": {}, "message": null}"#, "message must be"),
            (
                br#"{"header": {}, "message": {}, "signature": 1}"#,
                "signature must be",
            ),
            (br#"{"header": {}, "header": {}}"#, "duplicate"),
        ] {
            let r = refused(fx.verify(body, Route::Any, &lookups));
            assert!(r.message.contains(says), "{r:?}");
        }
        let r = refused(fx.verify(&vec![b' '; (1 << 20) + 1], Route::Any, &lookups));
        assert_eq!((r.status(), r.code()), (413, "err.request.bad"));
        for good in [
            "application/json",
            "Application/JSON; charset=\"UTF-8\"",
            "application/dci+json",
        ] {
            assert!(check_content_type(Some(good)).is_ok(), "{good}");
        }
        for bad in [
            "text/plain",
            "application/jsonp",
            "application/+json",
            "application/json; charset=latin-1",
        ] {
            assert!(check_content_type(Some(bad)).is_err(), "{bad}");
        }
        assert!(check_content_type(None).is_err());
        assert_eq!(lookups.get(), 0);
    }

    #[test]
    fn limits_are_checked() {
        assert!(Limits::default().validate().is_ok());
        for bad in [
            Limits {
                max_depth: 0,
                ..Limits::default()
            },
            Limits {
                max_depth: 129,
                ..Limits::default()
            },
            Limits {
                max_body_bytes: 0,
                ..Limits::default()
            },
            Limits {
                max_skew: -1,
                ..Limits::default()
            },
            Limits {
                max_lifetime: 0,
                ..Limits::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::Config(_))), "{bad:?}");
        }
    }
}
