//! The IBR OpenAPI document (spec/ibr_api_v1.0.0.yaml) as a validator of bodies: what the
//! sandbox checks every request against in strict mode, and what tests check the sandbox's
//! answers and callbacks against.
//!
//! Why a validator of our own rather than the `jsonschema` crate: the document uses twelve JSON
//! Schema keywords (`$ref`, `type`, `properties`, `required`, `items`, `enum`, `allOf`, `anyOf`,
//! `oneOf`, `maxLength`, `pattern`, `format`), only local references and no recursion.
//! Interpreting exactly those over `serde_json::Value` takes a few hundred lines and one small
//! dependency (`regex-lite`, for `pattern` and the URI grammar), where a general validator would
//! bring a large dependency tree into the wheel and the build for features this document never
//! uses. It stays exact by construction: a test fails when the document uses a keyword, type or
//! format this module does not interpret, and tests/test_spec_conformance.py checks the same
//! bodies with Python's `jsonschema` as an independent oracle.
//!
//! Semantics are those of OpenAPI 3.0 schema objects (JSON Schema draft 4): siblings of `$ref`
//! are ignored; `integer` is a number written without fraction or exponent; `format` is asserted
//! for `date-time` (RFC 3339), `uri` (an absolute RFC 3986 URI) and `int32` (a whole number in
//! range), and ignored otherwise (`binary` only appears in multipart bodies).
//!
//! The YAML is the source; the JSON copy embedded here is generated from it (`make spec-json`),
//! and tests/test_spec_conformance.py checks that they agree. The documented defects of the
//! document (spec/README.md) are read leniently by `lenient`, each with its reason.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use regex_lite::Regex;
use serde_json::{json, Value};

/// The spec, as JSON.
const DOCUMENT: &str = include_str!("../../spec/ibr_api_v1.0.0.json");

/// Schema nesting (through `$ref`s and combinators) beyond which validation gives up.
const MAX_SCHEMA_DEPTH: usize = 128;

/// One step of a path into a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Why a body does not conform: where, and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path to the offending value; for a missing member, the member's own path.
    pub at: Vec<Step>,
    pub problem: String,
}

impl Violation {
    fn new(at: &[Step], problem: String) -> Self {
        Violation {
            at: at.to_vec(),
            problem,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.at
            .iter()
            .filter_map(|s| match s {
                Step::Key(k) => Some(k.as_str()),
                Step::Index(_) => None,
            })
            .collect()
    }

    /// `header.sender_uri`, `message.search_request[0].timestamp`; `(body)` for the whole.
    pub fn location(&self) -> String {
        let mut out = String::new();
        for step in &self.at {
            match step {
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if out.is_empty() {
            out.push_str("(body)");
        }
        out
    }

    /// The spec's error code (`Error.code`) for a request refused for this violation: the
    /// header members with their own code get it, a signature that is not a string is
    /// `err.signature.invalid`, anything else `err.request.bad`.
    pub fn code(&self) -> &'static str {
        match self.keys().as_slice() {
            ["signature", ..] => "err.signature.invalid",
            ["header", "sender_id", ..] => "err.sender_id.invalid",
            ["header", "sender_uri", ..] => "err.sender_uri.invalid",
            ["header", "receiver_id", ..] => "err.receiver_id.invalid",
            ["header", "version", ..] => "err.version.not_supported",
            ["header", "is_msg_encrypted", ..] => "err.encryption.invalid",
            _ => "err.request.bad",
        }
    }

    /// The spec's status reason code for the offending part, when it has one
    /// (`MsgHeaderStatusReasonCode`, `SearchStatusReasonCode`, `SubscribeStatusReasonCode`,
    /// `UnSubscribeStatusReasonCode`): `header.message_ts` → `rjct.message_ts.invalid`,
    /// an item's `timestamp` → `rjct.timestamp.invalid`, its `search_criteria.pagination` →
    /// `rjct.pagination.invalid`, and so on.
    pub fn reason_code(&self) -> Option<&'static str> {
        let keys = self.keys();
        match keys.as_slice() {
            ["header", "message_ts", ..] => Some("rjct.message_ts.invalid"),
            ["header", "action", ..] => Some("rjct.action.invalid"),
            ["header", "total_count", ..] => Some("rjct.total_count.invalid"),
            ["header", "version", ..] => Some("rjct.version.invalid"),
            ["message", rest @ ..] => {
                // The first part, from the top, that has a code of its own.
                rest.iter().enumerate().find_map(|(i, k)| {
                    let next = rest.get(i + 1).copied();
                    match *k {
                        "reference_id" => Some("rjct.reference_id.invalid"),
                        "timestamp" => Some("rjct.timestamp.invalid"),
                        "search_criteria" => Some(match next {
                            Some("sort") => "rjct.sort.invalid",
                            Some("pagination") => "rjct.pagination.invalid",
                            _ => "rjct.search_criteria.invalid",
                        }),
                        "subscribe_criteria" => Some(match next {
                            Some("reg_event_type") => "rjct.notify_types.invalid",
                            _ => "rjct.notify_details.invalid",
                        }),
                        "subscription_codes" => Some("rjct.subscription_code.invalid"),
                        _ => None,
                    }
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.problem)
    }
}

/// The loaded document, with its leniencies applied, its references resolved and its patterns
/// compiled.
pub struct Spec {
    /// Loaded once per process and never dropped (it lives in a `OnceLock`), so that the
    /// resolved references can point into it.
    doc: &'static Value,
    refs: HashMap<&'static str, &'static Value>,
    patterns: HashMap<String, Regex>,
    uri: Regex,
    ip_future: Regex,
}

/// The spec, loaded on first use.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    // The document is a compile-time constant that the unit tests load: it cannot fail here.
    SPEC.get_or_init(|| Spec::load(DOCUMENT).expect("the embedded IBR spec loads"))
}

/// Replaces the value at `pointer` by `f(old)`; the pointer must exist (a test loads the spec).
fn patch(doc: &mut Value, pointer: &str, f: impl FnOnce(Value) -> Value) -> Result<(), String> {
    let slot = doc
        .pointer_mut(pointer)
        .ok_or_else(|| format!("leniency target {pointer} is not in the spec"))?;
    *slot = f(slot.take());
    Ok(())
}

/// The documented defects of the document (spec/README.md), read leniently. Each patch widens
/// what the document accepts to what it plainly means, never more; what we send stays as the
/// document writes it.
fn lenient(doc: &mut Value) -> Result<(), String> {
    const SCHEMAS: &str = "/components/schemas";
    // 1. An identifier or attribute value is `oneOf [string, integer, number, boolean, object]`:
    //    an integer is also a number, so as written `oneOf` refuses every integer. Meant: any.
    patch(
        doc,
        &format!("{SCHEMAS}/SubscriptionInfo/properties/filter/anyOf/1/properties/value/allOf/1"),
        |mut v| {
            if let Some(o) = v.as_object_mut() {
                if let Some(alternatives) = o.remove("oneOf") {
                    o.insert("anyOf".into(), alternatives);
                }
            }
            v
        },
    )?;
    // 2. `enrollement` / `enrollement_status_change` are misspelt in the standard itself; peers
    //    that correct them are accepted too.
    patch(
        doc,
        &format!(
            "{SCHEMAS}/NotifyEventRequest/properties/notify_event/items/properties/data/properties/reg_event_type/enum"
        ),
        |mut v| {
            if let Some(values) = v.as_array_mut() {
                values.extend([json!("enrollment"), json!("enrollment_status_change")]);
            }
            v
        },
    )?;
    // 3. `EnrolledResponse` requires `enrolled_status` (yes/no) on every item, even a rejected
    //    one, which has no answer to give (a made-up "no" would read as "not enrolled"): a `rjct`
    //    item may omit it.
    patch(
        doc,
        &format!("{SCHEMAS}/EnrolledResponse/properties/enrolled_response/items"),
        |mut v| {
            if let Some(o) = v.as_object_mut() {
                if let Some(Value::Array(required)) = o.get_mut("required") {
                    required.retain(|r| r != "enrolled_status");
                }
                o.insert(
                    "anyOf".into(),
                    json!([
                        {"properties": {"status": {"enum": ["rjct"]}}},
                        {"required": ["enrolled_status"]},
                    ]),
                );
            }
            v
        },
    )?;
    // 4. `txn_type` may be `subscribe`, but `txn_status` only offers a SearchResponse or a
    //    receipt: the status of a subscribe transaction is its SubscribeResponse.
    patch(
        doc,
        &format!(
            "{SCHEMAS}/TxnStatusResponse/properties/txnstatus_response/properties/txn_status/oneOf"
        ),
        |mut v| {
            if let Some(alternatives) = v.as_array_mut() {
                alternatives.push(json!({"$ref": "#/components/schemas/SubscribeResponse"}));
            }
            v
        },
    )?;
    // 5. `on-subscribe` / `on-unsubscribe` reuse the request header schema; a callback-style
    //    header (as every other callback has) is accepted too.
    for route in ["on-subscribe", "on-unsubscribe"] {
        patch(
            doc,
            &format!(
                "/paths/~1registry~1{route}/post/requestBody/content/application~1json/schema/properties/header/allOf/0"
            ),
            |request_header| {
                json!({"anyOf": [request_header, {"$ref": "#/components/schemas/MsgCallbackHeader_V1.0.0"}]})
            },
        )?;
    }
    // 6. `/registry/sync/enrolled` and `/registry/sync/enrollment/updates` point
    //    `responses.default` at a schema, not a response object; their answers are the bare
    //    message in practice, sometimes wrapped in a callback-style envelope: either is accepted.
    for path in ["sync~1enrolled", "sync~1enrollment~1updates"] {
        patch(
            doc,
            &format!("/paths/~1registry~1{path}/post/responses/default"),
            |message| {
                json!({
                    "description": "The bare message, or the message in an envelope",
                    "content": {"application/json": {"schema": {"anyOf": [
                        message,
                        {
                            "type": "object",
                            "properties": {
                                "signature": {"$ref": "#/components/schemas/MsgSignature"},
                                "header": {"$ref": "#/components/schemas/MsgCallbackHeader_V1.0.0"},
                                "message": {"type": "object", "oneOf": [
                                    message,
                                    {"$ref": "#/components/schemas/EncryptedMessage"},
                                ]},
                            },
                            "required": ["header", "message"],
                        },
                    ]}}},
                })
            },
        )?;
    }
    // Not patched: `components.securitySchemas` (misspelt) describes no body; the `locale`
    // example `en` breaks its own pattern `^[a-z]{3}$`, which stays enforced (we send `eng`).
    Ok(())
}

/// Every `$ref` of the document that resolves, with its target.
fn collect_refs(doc: &'static Value) -> HashMap<&'static str, &'static Value> {
    fn visit(
        doc: &'static Value,
        v: &'static Value,
        out: &mut HashMap<&'static str, &'static Value>,
    ) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    if let Some(target) = r.strip_prefix('#').and_then(|p| doc.pointer(p)) {
                        out.insert(r.as_str(), target);
                    }
                }
                o.values().for_each(|x| visit(doc, x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| visit(doc, x, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    visit(doc, doc, &mut out);
    out
}

fn collect_patterns(v: &Value, out: &mut HashMap<String, Regex>) -> Result<(), String> {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(p)) = o.get("pattern") {
                let re = Regex::new(p).map_err(|e| format!("pattern {p:?}: {e}"))?;
                out.insert(p.clone(), re);
            }
            o.values().try_for_each(|x| collect_patterns(x, out))
        }
        Value::Array(a) => a.iter().try_for_each(|x| collect_patterns(x, out)),
        _ => Ok(()),
    }
}

/// `/paths/<path>/post` as a JSON pointer.
fn operation(path: &str) -> String {
    format!("/paths/{}/post", path.replace('~', "~0").replace('/', "~1"))
}

/// An absolute RFC 3986 URI: `scheme ":" hier-part [ "?" query ] [ "#" fragment ]`. The
/// IP-literal host (`[…]`) is captured and checked apart (an IPv6 address or an IPvFuture).
fn uri_regex() -> String {
    const PCHAR: &str = r"(?:[A-Za-z0-9_.~!$&'()*+,;=:@\-]|%[0-9A-Fa-f]{2})";
    const QUERY: &str = r"(?:[A-Za-z0-9_.~!$&'()*+,;=:@/?\-]|%[0-9A-Fa-f]{2})*";
    const USERINFO: &str = r"(?:(?:[A-Za-z0-9_.~!$&'()*+,;=:\-]|%[0-9A-Fa-f]{2})*@)?";
    const REG_NAME: &str = r"(?:[A-Za-z0-9_.~!$&'()*+,;=\-]|%[0-9A-Fa-f]{2})*";
    format!(
        r"^[A-Za-z][A-Za-z0-9+.\-]*:(?://{USERINFO}(?:\[([^\]]*)\]|{REG_NAME})(?::[0-9]*)?(?:/{PCHAR}*)*|/(?:{PCHAR}+(?:/{PCHAR}*)*)?|{PCHAR}+(?:/{PCHAR}*)*|)(?:\?{QUERY})?(?:#{QUERY})?$"
    )
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `T` and `Z` in either case, a
/// real calendar date, no leap second.
pub fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<u32> {
        let part = b.get(from..to)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
    ) else {
        return false;
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    if year == 0
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            };
            matches!((two(*h1, *h2), two(*m1, *m2)), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

/// A JSON number written as a whole number (no fraction, no exponent).
fn is_integer(n: &serde_json::Number) -> bool {
    let text = n.to_string();
    let digits = text.strip_prefix('-').unwrap_or(&text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A short rendering of a value for a message (never a whole record).
fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 60 {
        text
    } else {
        format!("{}…", text.chars().take(57).collect::<String>())
    }
}

impl Spec {
    fn load(text: &str) -> Result<Spec, String> {
        let mut doc: Value =
            serde_json::from_str(text).map_err(|e| format!("the spec is not JSON: {e}"))?;
        lenient(&mut doc)?;
        let doc: &'static Value = Box::leak(Box::new(doc));
        let mut patterns = HashMap::new();
        collect_patterns(doc, &mut patterns)?;
        let uri = Regex::new(&uri_regex()).map_err(|e| e.to_string())?;
        let ip_future = Regex::new(r"^[vV][0-9A-Fa-f]+\.[A-Za-z0-9_.~!$&'()*+,;=:\-]+$")
            .map_err(|e| e.to_string())?;
        Ok(Spec {
            doc,
            refs: collect_refs(doc),
            patterns,
            uri,
            ip_future,
        })
    }

    /// The document, leniencies applied.
    pub fn document(&self) -> &Value {
        self.doc
    }

    /// `components.schemas.<name>`.
    pub fn component(&self, name: &str) -> Option<&Value> {
        self.doc.get("components")?.get("schemas")?.get(name)
    }

    /// The JSON request body schema of `POST <path>` (`/registry/search`, `/registry/on-search`…).
    pub fn request_schema(&self, path: &str) -> Option<&Value> {
        self.doc.pointer(&format!(
            "{}/requestBody/content/application~1json/schema",
            operation(path)
        ))
    }

    /// The JSON schema of the `default` (successful) answer of `POST <path>`.
    pub fn answer_schema(&self, path: &str) -> Option<&Value> {
        let mut response = self
            .doc
            .pointer(&format!("{}/responses/default", operation(path)))?;
        if let Some(Value::String(r)) = response.get("$ref") {
            response = self.doc.pointer(r.strip_prefix('#')?)?;
        }
        response.pointer("/content/application~1json/schema")
    }

    /// The spec's HTTP error body (`HttpErrorResponse`).
    pub fn error_schema(&self) -> Option<&Value> {
        self.doc
            .pointer("/components/responses/HttpErrorResponse/content/application~1json/schema")
    }

    /// Checks a request body (or a callback body, for a callback route) against its route.
    pub fn check_request(&self, path: &str, body: &Value) -> Result<(), Violation> {
        let schema = self.request_schema(path).ok_or_else(|| {
            Violation::new(&[], format!("the spec has no request body for POST {path}"))
        })?;
        self.check(schema, body)
    }

    /// Checks a successful answer of `POST <path>`.
    pub fn check_answer(&self, path: &str, body: &Value) -> Result<(), Violation> {
        let schema = self.answer_schema(path).ok_or_else(|| {
            Violation::new(&[], format!("the spec has no answer for POST {path}"))
        })?;
        self.check(schema, body)
    }

    /// Checks `instance` against `schema` (a schema of this document: its `$ref`s resolve here).
    pub fn check(&self, schema: &Value, instance: &Value) -> Result<(), Violation> {
        self.walk(schema, instance, &mut Vec::new(), 0)
    }

    fn resolve(&self, reference: &str, at: &[Step]) -> Result<&Value, Violation> {
        self.refs
            .get(reference)
            .copied()
            .ok_or_else(|| Violation::new(at, format!("the spec's $ref {reference} is unresolved")))
    }

    fn walk(
        &self,
        schema: &Value,
        v: &Value,
        at: &mut Vec<Step>,
        depth: usize,
    ) -> Result<(), Violation> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(Violation::new(
                at,
                "the spec's schemas nest too deeply".into(),
            ));
        }
        let Some(s) = schema.as_object() else {
            return Ok(());
        };
        if let Some(Value::String(r)) = s.get("$ref") {
            // OpenAPI 3.0: the siblings of a $ref are ignored.
            let target = self.resolve(r, at)?;
            return self.walk(target, v, at, depth + 1);
        }
        if let Some(Value::String(t)) = s.get("type") {
            let ok = match t.as_str() {
                "number" => v.is_number(),
                other => type_name(v) == other,
            };
            if !ok {
                return Err(Violation::new(
                    at,
                    format!("expected {t}, found {}", type_name(v)),
                ));
            }
        }
        if let Some(Value::Array(values)) = s.get("enum") {
            if !values.contains(v) {
                let allowed: Vec<String> = values.iter().map(shown).collect();
                return Err(Violation::new(
                    at,
                    format!("{} is not one of {}", shown(v), allowed.join(", ")),
                ));
            }
        }
        if let Value::Object(members) = v {
            if let Some(Value::Array(required)) = s.get("required") {
                for name in required.iter().filter_map(Value::as_str) {
                    if !members.contains_key(name) {
                        at.push(Step::Key(name.to_owned()));
                        let missing = Violation::new(at, "is required".into());
                        at.pop();
                        return Err(missing);
                    }
                }
            }
            if let Some(Value::Object(properties)) = s.get("properties") {
                for (name, sub) in properties {
                    if let Some(member) = members.get(name) {
                        at.push(Step::Key(name.clone()));
                        let r = self.walk(sub, member, at, depth + 1);
                        at.pop();
                        r?;
                    }
                }
            }
        }
        if let (Value::Array(items), Some(sub)) = (v, s.get("items")) {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                let r = self.walk(sub, item, at, depth + 1);
                at.pop();
                r?;
            }
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            for sub in all {
                self.walk(sub, v, at, depth + 1)?;
            }
        }
        if let Some(Value::Array(any)) = s.get("anyOf") {
            let mut failures = Vec::new();
            for sub in any {
                match self.walk(sub, v, at, depth + 1) {
                    Ok(()) => {
                        failures.clear();
                        break;
                    }
                    Err(e) => failures.push(e),
                }
            }
            if let Some(e) = closest(failures) {
                return Err(e);
            }
        }
        if let Some(Value::Array(one)) = s.get("oneOf") {
            let mut failures = Vec::new();
            let mut matched = 0;
            for sub in one {
                match self.walk(sub, v, at, depth + 1) {
                    Ok(()) => matched += 1,
                    Err(e) => failures.push(e),
                }
            }
            match matched {
                1 => {}
                0 => return Err(closest(failures).expect("oneOf has alternatives")),
                n => {
                    return Err(Violation::new(
                        at,
                        format!("matches {n} alternatives where the spec allows one"),
                    ))
                }
            }
        }
        if let Value::String(text) = v {
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                if text.chars().count() as u64 > max {
                    return Err(Violation::new(at, format!("longer than {max} characters")));
                }
            }
            if let Some(Value::String(p)) = s.get("pattern") {
                if self.patterns.get(p).is_some_and(|re| !re.is_match(text)) {
                    return Err(Violation::new(
                        at,
                        format!("{} does not match {p}", shown(v)),
                    ));
                }
            }
        }
        if let Some(Value::String(format)) = s.get("format") {
            if !self.has_format(format, v) {
                return Err(Violation::new(
                    at,
                    format!("{} is not a {format}", shown(v)),
                ));
            }
        }
        Ok(())
    }

    /// Whether `v` satisfies `format` (values of other types, and other formats, pass).
    fn has_format(&self, format: &str, v: &Value) -> bool {
        match (format, v) {
            ("date-time", Value::String(s)) => is_date_time(s),
            ("uri", Value::String(s)) => self.is_uri(s),
            ("int32", Value::Number(n)) => n.as_f64().is_some_and(|x| {
                x.fract() == 0.0 && (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&x)
            }),
            _ => true,
        }
    }

    /// An absolute RFC 3986 URI.
    pub fn is_uri(&self, s: &str) -> bool {
        let Some(caps) = self.uri.captures(s) else {
            return false;
        };
        match caps.get(1) {
            None => true,
            Some(literal) => {
                let literal = literal.as_str();
                literal.parse::<std::net::Ipv6Addr>().is_ok() || self.ip_future.is_match(literal)
            }
        }
    }
}

/// Of the failures of every alternative, the one that got deepest into the body (the first of
/// equals): the alternative the sender most likely meant.
fn closest(failures: Vec<Violation>) -> Option<Violation> {
    let mut best: Option<Violation> = None;
    for f in failures {
        if best.as_ref().is_none_or(|b| f.at.len() > b.at.len()) {
            best = Some(f);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keywords this module interprets, and annotations it may ignore.
    const INTERPRETED: [&str; 12] = [
        "$ref",
        "type",
        "properties",
        "required",
        "items",
        "enum",
        "allOf",
        "anyOf",
        "oneOf",
        "maxLength",
        "pattern",
        "format",
    ];
    const ANNOTATIONS: [&str; 3] = ["description", "example", "default"];

    /// Every schema of the document: request and answer bodies, components, and what they
    /// contain, visited through the keywords that hold subschemas.
    fn schemas(doc: &Value) -> Vec<(String, &Value)> {
        fn visit<'a>(s: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
            let Some(o) = s.as_object() else { return };
            out.push((at.clone(), s));
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("properties", Value::Object(p)) => {
                        for (name, sub) in p {
                            visit(sub, format!("{at}/properties/{name}"), out);
                        }
                    }
                    ("allOf" | "anyOf" | "oneOf", Value::Array(a)) => {
                        for (i, sub) in a.iter().enumerate() {
                            visit(sub, format!("{at}/{k}/{i}"), out);
                        }
                    }
                    ("items", sub) => visit(sub, format!("{at}/items"), out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for (name, s) in doc["components"]["schemas"].as_object().unwrap() {
            visit(s, format!("#/components/schemas/{name}"), &mut out);
        }
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let op = &ops["post"];
            if let Some(s) = op.pointer("/requestBody/content/application~1json/schema") {
                visit(s, format!("{path} request"), &mut out);
            }
            for (code, r) in op["responses"].as_object().unwrap() {
                if let Some(s) = r.pointer("/content/application~1json/schema") {
                    visit(s, format!("{path} {code}"), &mut out);
                }
            }
        }
        for (name, r) in doc["components"]["responses"].as_object().unwrap() {
            visit(
                &r["content"]["application/json"]["schema"],
                format!("#/components/responses/{name}"),
                &mut out,
            );
        }
        out
    }

    #[test]
    fn the_document_uses_nothing_this_validator_does_not_interpret() {
        let spec = spec();
        let all = schemas(spec.document());
        assert!(all.len() > 200, "{}", all.len());
        for (at, s) in all {
            for (k, v) in s.as_object().unwrap() {
                assert!(
                    INTERPRETED.contains(&k.as_str()) || ANNOTATIONS.contains(&k.as_str()),
                    "{at}: keyword {k}"
                );
                match k.as_str() {
                    "type" => assert!(
                        ["object", "array", "string", "integer", "number", "boolean"]
                            .contains(&v.as_str().unwrap()),
                        "{at}: type {v}"
                    ),
                    "format" => assert!(
                        ["date-time", "uri", "int32", "binary"].contains(&v.as_str().unwrap()),
                        "{at}: format {v}"
                    ),
                    "$ref" => {
                        spec.resolve(v.as_str().unwrap(), &[]).unwrap();
                    }
                    _ => {}
                }
            }
        }
        for path in [
            "/registry/search",
            "/registry/sync/search",
            "/registry/subscribe",
            "/registry/unsubscribe",
            "/registry/txn/status",
            "/registry/sync/txn/status",
            "/registry/sync/enrolled",
            "/registry/sync/enrollment/updates",
            "/registry/on-search",
            "/registry/on-subscribe",
            "/registry/on-unsubscribe",
            "/registry/txn/on-status",
            "/registry/notify",
        ] {
            assert!(spec.request_schema(path).is_some(), "{path}");
            assert!(spec.answer_schema(path).is_some(), "{path}");
        }
        assert!(spec.error_schema().is_some());
    }

    fn header(action: &str) -> Value {
        json!({"message_id": "m", "message_ts": "2025-01-02T03:04:05Z", "action": action,
               "sender_id": "sp", "total_count": 1})
    }

    fn search(item: Value) -> Value {
        json!({"signature": "", "header": header("search"),
               "message": {"transaction_id": "t", "search_request": [item]}})
    }

    fn item() -> Value {
        json!({"reference_id": "r", "timestamp": "2025-01-02T03:04:05Z",
               "search_criteria": {"query_type": "idtype-value", "query": {"type": "UIN", "value": "1"}}})
    }

    fn violation(path: &str, body: &Value) -> Violation {
        spec().check_request(path, body).unwrap_err()
    }

    #[test]
    fn violations_are_located_and_coded() {
        let s = spec();
        assert_eq!(
            s.check_request("/registry/sync/search", &search(item())),
            Ok(())
        );
        let mut b = search(item());
        b["header"]["sender_uri"] = Value::Null;
        let v = violation("/registry/search", &b);
        assert_eq!(v.location(), "header.sender_uri");
        assert_eq!(v.code(), "err.sender_uri.invalid");
        assert_eq!(v.problem, "expected string, found null");
        b["header"]["sender_uri"] = json!("not a uri");
        assert_eq!(
            violation("/registry/search", &b).problem,
            "\"not a uri\" is not a uri"
        );
        b["header"]["sender_uri"] = json!("http://127.0.0.1:8/cb/on-search");
        assert_eq!(s.check_request("/registry/search", &b), Ok(()));

        let mut b = search(item());
        b["header"].as_object_mut().unwrap().remove("sender_id");
        let v = violation("/registry/sync/search", &b);
        assert_eq!(
            (v.location().as_str(), v.code()),
            ("header.sender_id", "err.sender_id.invalid")
        );
        assert_eq!(v.problem, "is required");

        let mut b = search(item());
        b["header"]["action"] = json!("subscribe");
        let v = violation("/registry/sync/search", &b);
        assert_eq!(
            (v.code(), v.reason_code()),
            ("err.request.bad", Some("rjct.action.invalid"))
        );

        let mut it = item();
        it["timestamp"] = json!("");
        let v = violation("/registry/sync/search", &search(it));
        assert_eq!(v.location(), "message.search_request[0].timestamp");
        assert_eq!(v.reason_code(), Some("rjct.timestamp.invalid"));

        let mut it = item();
        it["search_criteria"]["pagination"] = json!({"page_number": 1});
        let v = violation("/registry/sync/search", &search(it));
        assert_eq!(
            v.location(),
            "message.search_request[0].search_criteria.pagination.page_size"
        );
        assert_eq!(v.reason_code(), Some("rjct.pagination.invalid"));

        let mut it = item();
        it["search_criteria"]["query_type"] = json!("graphql");
        let v = violation("/registry/sync/search", &search(it));
        assert_eq!(v.reason_code(), Some("rjct.search_criteria.invalid"));
        assert!(v.problem.contains("\"graphql\" is not one of"), "{v}");

        let mut b = search(item());
        b["signature"] = json!(5);
        assert_eq!(
            violation("/registry/sync/search", &b).code(),
            "err.signature.invalid"
        );
        assert_eq!(
            violation("/registry/sync/search", &json!([])).location(),
            "(body)"
        );
    }

    #[test]
    fn the_leniencies_apply() {
        let s = spec();
        // An integer attribute value (oneOf read as anyOf).
        let mut it = item();
        it["search_criteria"]["query_type"] = json!("predicate");
        it["search_criteria"]["query"] = json!([{"expression1":
            {"attribute_name": "YOB", "operator": "eq", "attribute_value": 1980}}]);
        assert_eq!(
            s.check_request("/registry/sync/search", &search(it)),
            Ok(())
        );
        // A rejected enrolled item needs no enrolled_status; a successful one does.
        let answer = |item: Value| json!({"transaction_id": "t", "correlation_id": "c", "enrolled_response": [item]});
        let rjct =
            json!({"reference_id": "r", "timestamp": "2025-01-02T03:04:05Z", "status": "rjct"});
        assert_eq!(
            s.check_answer("/registry/sync/enrolled", &answer(rjct)),
            Ok(())
        );
        let succ =
            json!({"reference_id": "r", "timestamp": "2025-01-02T03:04:05Z", "status": "succ"});
        assert!(s
            .check_answer("/registry/sync/enrolled", &answer(succ))
            .is_err());
        // Enrolled answers bare or enveloped.
        let yes = json!({"reference_id": "r", "timestamp": "2025-01-02T03:04:05Z", "status": "succ", "enrolled_status": "yes"});
        let mut h = header("on-enrolled");
        h["status"] = json!("succ");
        assert_eq!(
            s.check_answer("/registry/sync/enrolled", &answer(yes.clone())),
            Ok(())
        );
        let enveloped = json!({"signature": "", "header": h, "message": answer(yes)});
        assert_eq!(
            s.check_answer("/registry/sync/enrolled", &enveloped),
            Ok(())
        );
    }

    #[test]
    fn formats() {
        for ok in [
            "2024-01-15T10:30:00Z",
            "2024-02-29t10:30:00.123z",
            "2024-01-15T10:30:00+04:00",
            "2024-01-15T23:59:59-23:59",
        ] {
            assert!(is_date_time(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-01-15",
            "2024-01-15 10:30:00Z",
            "2023-02-29T10:30:00Z",
            "0000-01-01T00:00:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:30:60Z",
            "2024-01-15T10:30:00",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00+0400",
            "2024-01-15T10:30:00Z ",
            "２０２４-01-15T10:30:00Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        let s = spec();
        for ok in [
            "http://127.0.0.1:8000/cb/on-search?x=1#f",
            "https://sp.example.org/registry/on-search",
            "http://[::1]:9/cb",
            "http://[v1.x]/",
            "urn:isbn:0451450523",
            "mailto:a@b",
            "http://h/%41",
        ] {
            assert!(s.is_uri(ok), "{ok}");
        }
        for bad in [
            "",
            "/relative/path",
            "no-scheme",
            "http://h/a b",
            "http://[::g]/",
            "http://h/%4",
            "1http://h/",
            "http://h/\u{e9}",
            "http://h/#a#b",
        ] {
            assert!(!s.is_uri(bad), "{bad}");
        }
    }
}
