//! The embedded IBR sandbox, driven over loopback HTTP like a real registry.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};
use spp_dci_ibr::dci::envelope::{self, request_header, ResponseHeader, Signer, Status};
use spp_dci_ibr::dci::jwk::{to_jwk, Jwk, Jwks};
use spp_dci_ibr::dci::keys::{Algorithm, SigningKey};
use spp_dci_ibr::dci::signature::{check, Keys, Outcome, Policy};
use spp_dci_ibr::sandbox::spec::spec;
use spp_dci_ibr::sandbox::{DatasetSource, ErrorStyle, Faults, Sample, Sandbox, SandboxConfig};

/// The body as JSON (reqwest's `json` feature is not enabled in this crate).
trait JsonBody {
    fn json_value(self) -> Result<Value, String>;
}

impl JsonBody for reqwest::blocking::Response {
    fn json_value(self) -> Result<Value, String> {
        let text = self.text().map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

const SP: &str = "test.sp.local";

struct Harness {
    sb: Sandbox,
    http: reqwest::blocking::Client,
    signer: Signer,
    token: String,
}

fn harness(cfg: SandboxConfig) -> Harness {
    let sb = Sandbox::start(cfg).unwrap();
    let key = Arc::new(SigningKey::generate(Algorithm::Ed25519, 0).unwrap());
    let signer = Signer::new(key.clone(), SP, "sp-key-1").unwrap();
    sb.register_client_key(
        SP,
        Jwk {
            kid: Some(signer.kid()),
            key: key.verifying_key(),
        },
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let token = fetch_token(&http, &sb);
    Harness {
        sb,
        http,
        signer,
        token,
    }
}

fn fetch_token(http: &reqwest::blocking::Client, sb: &Sandbox) -> String {
    let answer: Value = http
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sb.client_id()),
            ("client_secret", sb.client_secret()),
        ])
        .send()
        .unwrap()
        .json_value()
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// The header of a request: the request header, or for `notify` (enrollment updates) the
/// spec's callback-style header.
fn header_of(action: &str, sender_uri: Option<&str>, receiver: &str, total: usize) -> Value {
    if action == "notify" {
        return ResponseHeader {
            action,
            status: Status::Succ,
            status_reason_code: None,
            status_reason_message: None,
            total_count: total,
            completed_count: total,
            sender_id: SP,
            receiver_id: receiver,
        }
        .to_value();
    }
    request_header(action, SP, sender_uri, receiver, total)
}

/// The spec's route of a callback `action`.
fn callback_route(action: &str) -> &'static str {
    match action {
        "on-search" => "/registry/on-search",
        "on-subscribe" => "/registry/on-subscribe",
        "on-unsubscribe" => "/registry/on-unsubscribe",
        "txn-on-status" => "/registry/txn/on-status",
        "notify" => "/registry/notify",
        other => panic!("not a callback action: {other}"),
    }
}

/// Checks an answer of the sandbox against the spec: a success against the route's answer
/// schema, an error in the spec's shape against `HttpErrorResponse`.
fn check_answer(route: &str, status: u16, answer: &Value) {
    let verdict = if (200..300).contains(&status) {
        spec().check_answer(route, answer)
    } else if answer.get("errors").is_some() {
        spec().check(spec().error_schema().unwrap(), answer)
    } else {
        Ok(())
    };
    if let Err(v) = verdict {
        panic!("the sandbox's answer to {route} does not conform to the spec: {v}\n{answer}");
    }
}

impl Harness {
    fn body(
        &self,
        action: &str,
        sender_uri: Option<&str>,
        total: usize,
        message: &Value,
    ) -> String {
        let header = header_of(action, sender_uri, self.sb.sender_id(), total);
        envelope::envelope_body(&header, message, Some(&self.signer)).unwrap()
    }

    /// Posts a body and returns the answer, which must conform to the spec.
    fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.sb.url()))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if path.starts_with("/registry/") {
            check_answer(path, status, &answer);
        }
        (status, answer)
    }

    fn post(
        &self,
        path: &str,
        action: &str,
        sender_uri: Option<&str>,
        total: usize,
        message: &Value,
    ) -> (u16, Value) {
        self.post_raw(path, self.body(action, sender_uri, total, message))
    }

    fn search(&self, items: &[(&str, &str, &str)]) -> (u16, Value) {
        self.post(
            "/registry/sync/search",
            "search",
            None,
            items.len(),
            &search_message(items),
        )
    }

    /// Checks a signed answer against the sandbox's published JWKS.
    fn outcome(&self, envelope: &Value) -> Outcome {
        let jwks_doc: Value = self
            .http
            .get(self.sb.jwks_url())
            .send()
            .unwrap()
            .json_value()
            .unwrap();
        let jwks = Jwks::from_value(&jwks_doc).unwrap();
        check(
            envelope["signature"].as_str().unwrap(),
            &&envelope["header"],
            &&envelope["message"],
            &Keys::Set(&jwks),
            Policy::at(envelope::now_unix()),
        )
        .unwrap()
        .outcome
    }
}

fn search_message(items: &[(&str, &str, &str)]) -> Value {
    json!({
        "transaction_id": envelope::new_id(),
        "search_request": items.iter().map(|(reference, t, v)| json!({
            "reference_id": reference,
            "timestamp": envelope::timestamp(envelope::now_unix()),
            "search_criteria": {
                "version": "1.0.0",
                "reg_type": "ns:org:RegistryType:IBR",
                "query_type": "idtype-value",
                "query": {"type": t, "value": v},
                "pagination": {"page_size": 10, "page_number": 1},
            },
        })).collect::<Vec<_>>(),
    })
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or("")
}

/// A request line or status line and its headers (names in lower case); None at EOF.
fn read_head(r: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            return Some((first.trim_end().to_owned(), headers));
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The `Content-Length` body after a head.
fn read_sized_body(r: &mut impl BufRead, headers: &[(String, String)]) -> Vec<u8> {
    let length = header(headers, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    body
}

/// A loopback callback receiver: every POST is answered with an ACK and passed on with its path.
struct Receiver {
    url: String,
    rx: mpsc::Receiver<(String, Value)>,
    port: u16,
    closed: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        let closed = Arc::new(AtomicBool::new(false));
        let stop = closed.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let tx = tx.clone();
                std::thread::spawn(move || Receiver::serve(stream.unwrap(), &tx));
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/registry/on-search"),
            rx,
            port,
            closed,
        }
    }

    /// The requests of one (keep-alive) connection.
    fn serve(stream: TcpStream, tx: &mpsc::Sender<(String, Value)>) {
        let mut r = BufReader::new(stream);
        while let Some((request_line, headers)) = read_head(&mut r) {
            let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
            let text = String::from_utf8(read_sized_body(&mut r, &headers)).unwrap();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let ack = json!({"message": {"ack_status": "ACK", "timestamp": envelope::timestamp(envelope::now_unix()), "correlation_id": "c"}}).to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ack}",
                ack.len()
            );
            if r.get_mut().write_all(answer.as_bytes()).is_err() || tx.send((path, body)).is_err() {
                return;
            }
        }
    }

    /// The next callback's path and body; the body must conform to the spec's schema of the
    /// callback route of its action.
    fn next_at(&self) -> (String, Value) {
        let (path, body) = self
            .rx
            .recv_timeout(Duration::from_secs(15))
            .expect("a callback");
        let action = body["header"]["action"].as_str().unwrap_or("");
        if let Err(v) = spec().check_request(callback_route(action), &body) {
            panic!("the {action} callback does not conform to the spec: {v}\n{body}");
        }
        (path, body)
    }

    /// The next callback's action and body.
    fn next(&self) -> (String, Value) {
        let (_, body) = self.next_at();
        let action = body["header"]["action"].as_str().unwrap_or("").to_owned();
        (action, body)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Wakes the accept loop up to see the flag.
        self.closed.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// An answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn error_code(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        error_code(&body).to_owned()
    }
}

/// A raw HTTP/1.1 connection to the sandbox, to see what client libraries hide: framing,
/// keep-alive and closes. Reads give up after 20 s (a failure, not a hang).
struct Raw {
    r: BufReader<TcpStream>,
}

impl Raw {
    fn open(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            r: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).unwrap();
    }

    /// The next answer; None when the connection is closed instead.
    fn answer(&mut self) -> Option<Answer> {
        let (status_line, headers) = read_head(&mut self.r)?;
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let body = read_sized_body(&mut self.r, &headers);
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    fn exchange(&mut self, request: &str) -> Answer {
        self.send(request.as_bytes());
        self.answer().expect("an answer")
    }

    /// Whether the sandbox has closed the connection (end of stream or reset, not a timeout),
    /// with nothing more to read.
    fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.r.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ),
        }
    }
}

const GET_JWKS: &str = "GET /.well-known/jwks.json HTTP/1.1\r\nHost: sandbox\r\n\r\n";

#[test]
fn token_endpoint_takes_body_basic_and_query_credentials() {
    let h = harness(SandboxConfig::default());
    let (id, secret) = (h.sb.client_id().to_owned(), h.sb.client_secret().to_owned());
    let basic = h
        .http
        .post(h.sb.token_url())
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "ibr.search"),
        ])
        .send()
        .unwrap();
    assert_eq!(basic.status(), 200);
    let basic: Value = basic.json_value().unwrap();
    assert_eq!(basic["token_type"], "Bearer");
    assert_eq!(basic["expires_in"], 3600);
    assert_eq!(basic["scope"], "ibr.search");
    let query = h
        .http
        .post(format!(
            "{}?grant_type=client_credentials&client_id={id}&client_secret={secret}",
            h.sb.token_url()
        ))
        .send()
        .unwrap();
    assert_eq!(query.status(), 200);
    let wrong = h
        .http
        .post(h.sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", "nope"),
        ])
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json_value().unwrap()["error"], "invalid_client");
    let grant = h
        .http
        .post(h.sb.token_url())
        .form(&[("grant_type", "password")])
        .send()
        .unwrap();
    assert_eq!(grant.status(), 400);
    assert_eq!(h.sb.stats().tokens_issued, 3);
}

#[test]
fn jwks_publishes_the_key_that_signs_answers() {
    let h = harness(SandboxConfig::default());
    let doc: Value = h
        .http
        .get(h.sb.jwks_url())
        .send()
        .unwrap()
        .json_value()
        .unwrap();
    assert_eq!(doc, h.sb.public_jwks());
    assert_eq!(
        doc["keys"][0]["kid"],
        "ibr.sandbox.local|sandbox-key-1|ed25519"
    );
    assert_eq!(doc["keys"][0]["alg"], "EdDSA");
    let (status, answer) = h.search(&[("r1", "UIN", "UIN-00000001")]);
    assert_eq!(status, 200);
    assert_eq!(h.outcome(&answer), Outcome::Valid);
}

#[test]
fn sync_search_answers_a_signed_on_search_envelope() {
    let h = harness(SandboxConfig::default());
    let (status, answer) = h.search(&[("ref-1", "UIN", "UIN-00000042")]);
    assert_eq!(status, 200, "{answer}");
    let header = &answer["header"];
    assert_eq!(header["action"], "on-search");
    assert_eq!(header["status"], "succ");
    assert_eq!(header["sender_id"], "ibr.sandbox.local");
    assert_eq!(header["receiver_id"], SP);
    assert_eq!(
        (
            header["total_count"].as_u64(),
            header["completed_count"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(header["is_msg_encrypted"], false);
    let item = &answer["message"]["search_response"][0];
    assert_eq!(item["reference_id"], "ref-1");
    assert_eq!(item["status"], "succ");
    assert_eq!(item["locale"], "eng");
    assert_eq!(item["pagination"]["total_count"], 1);
    let record = &item["data"]["reg_records"][0];
    assert_eq!(
        record["member"]["demographic_info"]["person"]["identifier_value"],
        "UIN-00000042"
    );
    assert_eq!(record, &h.sb.records()[41]);
    assert!(answer["message"]["correlation_id"].as_str().is_some());
    assert_eq!(h.outcome(&answer), Outcome::Valid);
}

#[test]
fn batch_items_echo_their_reference_and_a_bad_item_is_rejected_alone() {
    let h = harness(SandboxConfig::default());
    let mut message = search_message(&[
        ("a", "UIN", "UIN-00000003"),
        ("b", "UIN", "UIN-99999999"),
        ("c", "UIN", "UIN-00000004"),
    ]);
    message["search_request"][1]["search_criteria"]["query"] = json!({"type": "UIN"});
    message["search_request"].as_array_mut().unwrap().push(json!({
        "reference_id": "d", "timestamp": envelope::timestamp(envelope::now_unix()),
        "search_criteria": {"query_type": "idtype-value", "query": {"type": "UIN", "value": "UIN-12345678"}}}));
    let (status, answer) = h.post("/registry/sync/search", "search", None, 4, &message);
    assert_eq!(status, 200);
    let items = answer["message"]["search_response"].as_array().unwrap();
    let refs: Vec<&str> = items
        .iter()
        .map(|i| i["reference_id"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["a", "b", "c", "d"]);
    assert_eq!(items[1]["status"], "rjct");
    assert_eq!(
        items[1]["status_reason_code"],
        "rjct.search_criteria.invalid"
    );
    for i in [0, 2] {
        assert_eq!(items[i]["status"], "succ");
        assert_eq!(items[i]["data"]["reg_records"].as_array().unwrap().len(), 1);
    }
    assert_eq!(items[3]["status"], "succ");
    assert_eq!(items[3]["data"]["reg_records"], json!([]));
    assert_eq!(h.sb.stats().search_items, 4);
}

#[test]
fn pagination_is_capped_by_the_max_page_size() {
    let cfg = SandboxConfig {
        max_page_size: 2,
        ..SandboxConfig::default()
    };
    let family = {
        let probe = Sandbox::start(SandboxConfig::default()).unwrap();
        let records = probe.records();
        records[0]["member"]["demographic_info"]["person"]["name"]["surname"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let h = harness(cfg);
    let total = h
        .sb
        .records()
        .iter()
        .filter(|r| r["member"]["demographic_info"]["person"]["name"]["surname"] == family.as_str())
        .count();
    assert!(total >= 3, "{family}: {total}");
    let mut message = search_message(&[("p", "x", "y")]);
    message["search_request"][0]["search_criteria"]["query_type"] = json!("expression");
    message["search_request"][0]["search_criteria"]["query"] =
        json!({"family_name": {"$eq": family}});
    message["search_request"][0]["search_criteria"]["pagination"] =
        json!({"page_size": 50, "page_number": 2});
    let (_, answer) = h.post("/registry/sync/search", "search", None, 1, &message);
    let item = &answer["message"]["search_response"][0];
    assert_eq!(
        item["pagination"],
        json!({"page_size": 2, "page_number": 2, "total_count": total})
    );
    assert_eq!(
        item["data"]["reg_records"].as_array().unwrap().len(),
        2.min(total - 2)
    );
}

#[test]
fn async_search_acks_then_calls_back_signed_and_txn_status_finds_it() {
    let h = harness(SandboxConfig::default());
    let rx = Receiver::start();
    let message = search_message(&[("r1", "UIN", "UIN-00000002"), ("r2", "UIN", "UIN-00000005")]);
    let (status, ack) = h.post("/registry/search", "search", Some(&rx.url), 2, &message);
    assert_eq!(status, 202, "{ack}");
    assert_eq!(ack["message"]["ack_status"], "ACK");
    assert!(
        ack["message"].get("error").is_none(),
        "omitted, never null: {ack}"
    );
    let (action, callback) = rx.next();
    assert_eq!(action, "on-search");
    assert_eq!(h.outcome(&callback), Outcome::Valid);
    assert_eq!(callback["header"]["receiver_id"], SP);
    assert_eq!(callback["header"]["completed_count"], 2);
    assert_eq!(
        callback["message"]["correlation_id"],
        ack["message"]["correlation_id"]
    );
    assert_eq!(
        callback["message"]["transaction_id"],
        message["transaction_id"]
    );
    assert_eq!(
        callback["message"]["search_response"][1]["reference_id"],
        "r2"
    );

    let status_request = |attribute_type: &str, value: Value| {
        json!({"transaction_id": envelope::new_id(), "txnstatus_request": {
            "reference_id": "s1", "txn_type": "search", "attribute_type": attribute_type, "attribute_value": value}})
    };
    let (status, answer) = h.post(
        "/registry/sync/txn/status",
        "txn-status",
        None,
        1,
        &status_request("transaction_id", message["transaction_id"].clone()),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["header"]["action"], "txn-on-status");
    let txn = &answer["message"]["txnstatus_response"];
    assert_eq!(txn["txn_type"], "search");
    assert_eq!(
        txn["txn_status"]["search_response"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, answer) = h.post(
        "/registry/sync/txn/status",
        "txn-status",
        None,
        1,
        &status_request("reference_id_list", json!(["r2"])),
    );
    let items = &answer["message"]["txnstatus_response"]["txn_status"]["search_response"];
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["reference_id"], "r2");
    let (status, answer) = h.post(
        "/registry/sync/txn/status",
        "txn-status",
        None,
        1,
        &status_request("transaction_id", json!("never-seen")),
    );
    assert_eq!(
        (status, error_code(&answer)),
        (404, "err.request.not_found")
    );

    // Async status: the answer goes to the sibling route of the on-search URI.
    let (status, _) = h.post(
        "/registry/txn/status",
        "txn-status",
        Some(&rx.url),
        1,
        &status_request("correlation_id", ack["message"]["correlation_id"].clone()),
    );
    assert_eq!(status, 202);
    let (action, callback) = rx.next();
    assert_eq!(action, "txn-on-status");
    assert_eq!(h.outcome(&callback), Outcome::Valid);
    assert_eq!(
        callback["message"]["txnstatus_response"]["txn_status"]["correlation_id"],
        ack["message"]["correlation_id"]
    );
    // The sandbox counts a callback once the receiver's answer is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.sb.stats().callbacks_sent < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = h.sb.stats();
    assert_eq!((stats.callbacks_sent, stats.callbacks_failed), (2, 0));
}

#[test]
fn subscribe_and_unsubscribe_call_back() {
    // Item s2 lacks what the spec requires of subscribe criteria, on purpose: it is rejected
    // alone (strict mode would refuse the whole request).
    let h = harness(SandboxConfig {
        strict: false,
        ..SandboxConfig::default()
    });
    let rx = Receiver::start();
    let ts = envelope::timestamp(envelope::now_unix());
    let message = json!({"transaction_id": "t-sub", "subscribe_request": [
        {"reference_id": "s1", "timestamp": ts, "subscribe_criteria": {
            "reg_event_type": "spdci-common:RegistryEventType:enrollement", "filter_type": "idtype-value",
            "filter": {"type": "UIN", "value": "UIN-00000001"}, "notify_record_type": "Beneficiary"}},
        {"reference_id": "s2", "timestamp": ts, "subscribe_criteria": {"filter": {}}},
    ]});
    let (status, _) = h.post(
        "/registry/subscribe",
        "subscribe",
        Some(&rx.url),
        2,
        &message,
    );
    assert_eq!(status, 202);
    let (action, callback) = rx.next();
    assert_eq!(action, "on-subscribe");
    assert_eq!(h.outcome(&callback), Outcome::Valid);
    let items = &callback["message"]["subscribe_response"];
    assert_eq!(items[0]["status"], "succ");
    assert_eq!(items[1]["status"], "rjct");
    assert_eq!(items[1]["status_reason_code"], "rjct.notify_types.invalid");
    let code = items[0]["subscriptions"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = json!({"transaction_id": "t-unsub", "timestamp": ts, "subscription_codes": [code, "SUB-unknown"]});
    let (status, _) = h.post(
        "/registry/unsubscribe",
        "unsubscribe",
        Some(&rx.url),
        2,
        &message,
    );
    assert_eq!(status, 202);
    let (action, callback) = rx.next();
    assert_eq!(action, "on-unsubscribe");
    assert_eq!(callback["message"]["status"], "rjct");
    assert_eq!(
        callback["message"]["status_reason_code"],
        "rjct.subscription_code.invalid"
    );
    assert_eq!(
        callback["message"]["subscription_status"],
        json!([{"code": code, "status": "unsubscribe"}])
    );
}

#[test]
fn refusals_have_the_right_status_and_code() {
    let cfg = SandboxConfig {
        token_lifetime: 0,
        ..SandboxConfig::default()
    };
    let h = harness(cfg);
    let body = h.body(
        "search",
        None,
        1,
        &search_message(&[("r", "UIN", "UIN-00000001")]),
    );
    let send = |auth: Option<&str>, body: String| {
        let mut rq = h
            .http
            .post(format!("{}/registry/sync/search", h.sb.url()))
            .body(body);
        if let Some(a) = auth {
            rq = rq.header("Authorization", a);
        }
        let resp = rq.send().unwrap();
        (
            resp.status().as_u16(),
            resp.json_value().unwrap_or(Value::Null),
        )
    };
    let (status, answer) = send(None, body.clone());
    assert_eq!(
        (status, error_code(&answer)),
        (401, "err.request.unauthorized")
    );
    // A token of lifetime 0 is expired as soon as it is issued.
    let (status, answer) = send(Some(&format!("Bearer {}", h.token)), body.clone());
    assert_eq!(
        (status, error_code(&answer)),
        (401, "err.request.unauthorized")
    );
    assert_eq!(h.sb.stats().auth_failures, 2);
}

#[test]
fn signature_and_envelope_refusals() {
    let h = harness(SandboxConfig {
        strict_receiver_id: true,
        ..SandboxConfig::default()
    });
    let message = search_message(&[("r", "UIN", "UIN-00000001")]);
    let signed: Value = serde_json::from_str(&h.body("search", None, 1, &message)).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = signed.clone();
        f(&mut e);
        h.post_raw("/registry/sync/search", e.to_string())
    };
    let (status, answer) = with(&|e| e["message"]["transaction_id"] = json!("tampered"));
    assert_eq!(
        (status, error_code(&answer)),
        (401, "err.signature.invalid")
    );
    let (status, answer) = with(&|e| e["signature"] = json!(""));
    assert_eq!(
        (status, error_code(&answer)),
        (401, "err.signature.missing")
    );
    let (status, answer) = with(&|e| {
        e.as_object_mut().unwrap().remove("signature");
    });
    assert_eq!(
        (status, error_code(&answer)),
        (401, "err.signature.missing")
    );
    let (status, answer) = with(&|e| e["header"]["sender_id"] = json!("stranger"));
    assert_eq!(
        (status, error_code(&answer)),
        (401, "err.sender_id.invalid")
    );
    let (status, answer) = h.post_raw("/registry/sync/search", signed.to_string());
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = h.post_raw("/registry/sync/search", signed.to_string());
    assert_eq!(
        (status, error_code(&answer)),
        (409, "err.request.bad"),
        "replay"
    );
    let (status, answer) = with(&|e| e["header"]["action"] = json!("subscribe"));
    assert_eq!((status, error_code(&answer)), (400, "err.request.bad"));
    let (status, answer) = with(&|e| e["header"]["receiver_id"] = json!("other.registry"));
    assert_eq!(
        (status, error_code(&answer)),
        (400, "err.receiver_id.invalid")
    );
    let (status, answer) = with(&|e| e["header"]["receiver_id"] = json!("other.registry"));
    assert_eq!(
        (status, error_code(&answer)),
        (400, "err.receiver_id.invalid")
    );
    let (status, answer) = with(&|e| e["header"]["version"] = json!("2.0.0"));
    assert_eq!(
        (status, error_code(&answer)),
        (400, "err.version.not_supported")
    );
    let (status, answer) = h.post_raw("/registry/sync/search", "{not json".into());
    assert_eq!((status, error_code(&answer)), (400, "err.request.bad"));
    let (status, answer) = h.post_raw("/registry/sync/search", json!({"header": {}}).to_string());
    assert_eq!((status, error_code(&answer)), (400, "err.request.bad"));
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let (status, _) = h.post_raw("/registry/sync/search", deep);
    assert_eq!(status, 400);
    let (status, answer) = h.post_raw("/registry/sync/search", " ".repeat((1 << 20) + 1));
    assert_eq!((status, error_code(&answer)), (413, "err.request.bad"));
    let (status, answer) = h.post_raw("/registry/nope", "{}".into());
    assert_eq!(
        (status, error_code(&answer)),
        (404, "err.request.not_found")
    );
    let (status, answer) = h.post("/registry/search", "search", None, 1, &message);
    assert_eq!(
        (status, error_code(&answer)),
        (400, "err.sender_uri.invalid")
    );
    let (status, answer) = h.post(
        "/registry/search",
        "search",
        Some("http://192.0.2.1/cb"),
        1,
        &message,
    );
    assert_eq!(
        (status, error_code(&answer)),
        (400, "err.sender_uri.invalid"),
        "no callbacks off loopback"
    );
    assert!(h.sb.stats().signature_failures >= 4);
}

#[test]
fn several_keys_without_kid_are_each_tried() {
    let h = harness(SandboxConfig::default());
    let mut signers = Vec::new();
    for n in 0..2 {
        let key = Arc::new(SigningKey::generate(Algorithm::Ed25519, 0).unwrap());
        h.sb.register_client_key(
            "pem.sender",
            Jwk {
                kid: None,
                key: key.verifying_key(),
            },
        );
        signers.push(Signer::new(key, "pem.sender", &format!("unlisted-{n}")).unwrap());
    }
    let message = search_message(&[("r", "UIN", "UIN-00000001")]);
    for signer in &signers {
        let header = request_header("search", "pem.sender", None, h.sb.sender_id(), 1);
        let body = envelope::envelope_body(&header, &message, Some(signer)).unwrap();
        assert_eq!(h.post_raw("/registry/sync/search", body).0, 200);
    }
    let stranger = Signer::new(
        Arc::new(SigningKey::generate(Algorithm::Ed25519, 0).unwrap()),
        "pem.sender",
        "x",
    )
    .unwrap();
    let header = request_header("search", "pem.sender", None, h.sb.sender_id(), 1);
    let body = envelope::envelope_body(&header, &message, Some(&stranger)).unwrap();
    let (status, answer) = h.post_raw("/registry/sync/search", body);
    assert_eq!(
        (status, error_code(&answer)),
        (401, "err.signature.invalid")
    );
}

#[test]
fn error_styles_follow_the_configuration() {
    for (style, pick) in [
        (ErrorStyle::Ack, "/message/error/code"),
        (ErrorStyle::Detail, "/detail/code"),
    ] {
        let cfg = SandboxConfig {
            error_style: style,
            ..SandboxConfig::default()
        };
        let h = harness(cfg);
        let (status, answer) = h.post_raw("/registry/sync/search", "[]".into());
        assert_eq!(status, 400);
        assert_eq!(
            answer.pointer(pick),
            Some(&json!("err.request.bad")),
            "{answer}"
        );
        if style == ErrorStyle::Ack {
            assert_eq!(answer["message"]["ack_status"], "ERR");
        }
    }
}

#[test]
fn without_auth_and_signatures_an_unsigned_request_is_answered() {
    let cfg = SandboxConfig {
        require_auth: false,
        require_signatures: false,
        ..SandboxConfig::default()
    };
    let sb = Sandbox::start(cfg).unwrap();
    let header = request_header("search", "anyone", None, sb.sender_id(), 1);
    let body = envelope::envelope_body(
        &header,
        &search_message(&[("r", "UIN", "UIN-00000001")]),
        None,
    )
    .unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/registry/sync/search", sb.url()))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json_value().unwrap();
    assert_eq!(
        answer["message"]["search_response"][0]["data"]["reg_records"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// What a sequence of requests met, for the determinism check.
fn fault_trace(seed: u64) -> (Vec<String>, spp_dci_ibr::sandbox::Stats) {
    let cfg = SandboxConfig {
        faults: Faults::from_value(&json!({
        "seed": seed, "error_rates": {"500": 0.1, "503": 0.1, "429": 0.1},
        "drop_rate": 0.1, "garbage_rate": 0.1, "bad_signature_rate": 0.2, "wrong_reference_rate": 0.2,
        "retry_after": 0,
    }))
    .unwrap(),
        ..SandboxConfig::default()
    };
    let h = harness(cfg);
    let mut trace = Vec::new();
    for n in 0..40 {
        let body = h.body(
            "search",
            None,
            1,
            &search_message(&[("ref", "UIN", "UIN-00000001")]),
        );
        let resp = h
            .http
            .post(format!("{}/registry/sync/search", h.sb.url()))
            .bearer_auth(&h.token)
            .body(body)
            .send();
        let outcome = match resp {
            Err(_) => "dropped".to_owned(),
            Ok(r) => {
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").is_some();
                match r.json_value() {
                    Err(_) => format!("{status} garbage"),
                    Ok(v) if status != 200 => {
                        assert!(matches!(
                            error_code(&v),
                            "err.service.unavailable" | "err.request.too_many_requests"
                        ));
                        assert_eq!(retry, status != 500);
                        format!("{status}")
                    }
                    Ok(v) => {
                        let sig = h.outcome(&v).as_str();
                        let reference = v["message"]["search_response"][0]["reference_id"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                        format!(
                            "200 {sig} {}",
                            if reference == "ref" {
                                "ref"
                            } else {
                                "wrong-ref"
                            }
                        )
                    }
                }
            }
        };
        trace.push(format!("{n}: {outcome}"));
    }
    (trace, h.sb.stats())
}

#[test]
fn faults_are_reproducible_from_the_seed() {
    let (a, stats) = fault_trace(7);
    let (b, _) = fault_trace(7);
    assert_eq!(a, b);
    let (c, _) = fault_trace(8);
    assert_ne!(a, c);
    let joined = a.join("\n");
    for needle in [
        "dropped",
        "garbage",
        ": 500",
        ": 503",
        ": 429",
        "200 valid ref",
        "200 invalid",
        "wrong-ref",
    ] {
        assert!(joined.contains(needle), "{needle} missing from\n{joined}");
    }
    let injected: u64 = ["drop", "garbage", "status_500", "status_503", "status_429"]
        .iter()
        .map(|k| stats.faults.get(*k).copied().unwrap_or(0))
        .sum();
    assert_eq!(
        injected as usize,
        a.iter()
            .filter(|t| !t.contains(": 200 valid") && !t.contains(": 200 invalid"))
            .count()
    );
}

#[test]
fn callbacks_can_be_late_duplicated_and_badly_signed() {
    let cfg = SandboxConfig {
        faults: Faults::from_value(
            &json!({"duplicate_callback_rate": 1.0, "callback_delay_ms": 50}),
        )
        .unwrap(),
        ..SandboxConfig::default()
    };
    let h = harness(cfg);
    let rx = Receiver::start();
    let (status, _) = h.post(
        "/registry/search",
        "search",
        Some(&rx.url),
        1,
        &search_message(&[("r", "UIN", "UIN-00000001")]),
    );
    assert_eq!(status, 202);
    let (_, first) = rx.next();
    let (_, second) = rx.next();
    assert_eq!(
        first, second,
        "a duplicate is the same message, same message_id"
    );
    let stats = h.sb.stats();
    assert_eq!(stats.faults.get("late_callback"), Some(&1));
    assert_eq!(stats.faults.get("duplicate_callback"), Some(&1));
    h.sb.set_faults(Faults::from_value(&json!({"bad_signature_rate": 1.0})).unwrap());
    h.post(
        "/registry/search",
        "search",
        Some(&rx.url),
        1,
        &search_message(&[("r", "UIN", "UIN-00000001")]),
    );
    let (_, bad) = rx.next();
    assert_eq!(h.outcome(&bad), Outcome::Invalid);
}

#[test]
fn enrolled_answers_yes_or_no_enveloped_or_bare() {
    for bare in [false, true] {
        // The `enrolled_request` batch form is an extension the spec does not have.
        let cfg = SandboxConfig {
            bare_enrolled: bare,
            strict: false,
            ..SandboxConfig::default()
        };
        let h = harness(cfg);
        let active = h.sb.sample_identifiers(Sample::Active, 1).remove(0);
        let graduated = h.sb.sample_identifiers(Sample::Graduated, 1).remove(0);
        let unknown = h.sb.sample_identifiers(Sample::Unknown, 1).remove(0);
        let message = json!({"transaction_id": "t", "enrolled_request": [
            {"reference_id": "a", "enrolled_criteria": {"query_type": "idtype-value", "query": {"type": active.0, "value": active.1}}},
            {"reference_id": "g", "enrolled_criteria": {"query": {"person_identifier": {"eq": graduated.1}}}},
            {"reference_id": "u", "enrolled_criteria": {"query": {"person_identifier": {"eq": unknown.1}}}},
            {"reference_id": "x", "enrolled_criteria": {"query": {"shoe_size": {"eq": 3}}}},
        ]});
        let (status, answer) = h.post("/registry/sync/enrolled", "search", None, 4, &message);
        assert_eq!(status, 200);
        let msg = if bare {
            assert!(answer.get("header").is_none());
            &answer
        } else {
            assert_eq!(h.outcome(&answer), Outcome::Valid);
            &answer["message"]
        };
        let items = &msg["enrolled_response"];
        let got: Vec<(&str, &str)> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["status"].as_str().unwrap(),
                    i["enrolled_status"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("succ", "yes"),
                ("succ", "no"),
                ("succ", "no"),
                ("rjct", "-")
            ]
        );
        // The spec's single-criteria form, with a programme filter.
        let record = &h.sb.records()[0];
        let programme = record["member"]["programme_identifier"]
            .get(0)
            .unwrap_or(&record["member"]["programme_identifier"])["programme"]
            ["programme_identifier"]
            .clone();
        let message = json!({"transaction_id": "t2", "enrolled_criteria": {"query_type": "expression", "query": {
            "person_identifier": {"eq": "UIN-00000001"},
            "programme_identifier.program.programme_identifier": {"eq": programme}}}});
        let (_, answer) = h.post("/registry/sync/enrolled", "search", None, 1, &message);
        let msg = if bare { &answer } else { &answer["message"] };
        assert_eq!(msg["enrolled_response"][0]["enrolled_status"], "yes");
    }
}

#[test]
fn enrollment_updates_change_what_search_finds() {
    let h = harness(SandboxConfig::default());
    let before = h.search(&[("n", "NID", "NEW-777")]).1;
    assert_eq!(
        before["message"]["search_response"][0]["data"]["reg_records"],
        json!([])
    );
    let message = json!({"transaction_id": "t-upd", "enrolled_updates": {"beneficiaries": [
        {"member": {"demographic_info": {"person": {"identifier_type": "NID", "identifier_value": "NEW-777",
            "name": {"first_name": "Þóra", "surname": "Ōkubo"}}},
          "programme_identifier": {"programme": {"programme_identifier": "PRG-X", "programme_name": "X"},
            "enrolment_status": "Active", "enrolment_date": "2025-01-01"}}},
        {"member": {"demographic_info": {"person": {"identifier_type": "UIN", "identifier_value": "UIN-00000004"}},
          "programme_identifier": {"programme": {"programme_identifier": "PRG-X"}, "enrollment_status": 1}}},
        {"member": {}},
    ]}});
    let (status, answer) = h.post(
        "/registry/sync/enrollment/updates",
        "notify",
        None,
        3,
        &message,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(h.outcome(&answer), Outcome::Valid);
    let statuses: Vec<&str> = answer["message"]["enrolled_response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succ", "succ", "rjct"]);
    let after = h.search(&[("n", "NID", "NEW-777")]).1;
    let record = &after["message"]["search_response"][0]["data"]["reg_records"][0];
    assert_eq!(
        record["member"]["demographic_info"]["person"]["name"]["first_name"],
        "Þóra"
    );
    assert_eq!(h.sb.records().len(), 101);
    let deceased = h.sb.records()[3].clone();
    let programmes = deceased["member"]["programme_identifier"]
        .as_array()
        .unwrap()
        .len();
    assert!(programmes >= 2, "UIN-00000004 gained an enrolment");
}

#[test]
fn datasets_load_from_json_and_csv_files() {
    let dir = std::env::temp_dir().join(format!("ibr-sandbox-{}", envelope::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("people.csv");
    std::fs::write(
        &csv,
        "id_type,id_value,given_name,family_name,programme_id,programme_name,enrolment_status,enrolment_date\n\
         UIN,C-1,José,García,P1,Cash,Suspended,2024-01-01\n",
    )
    .unwrap();
    let json_path = dir.join("people.json");
    let records = Sandbox::start(SandboxConfig::default()).unwrap().records();
    std::fs::write(&json_path, json!({"reg_records": records[..3]}).to_string()).unwrap();
    for (path, id, count) in [(csv, "C-1", 1), (json_path, "UIN-00000002", 3)] {
        let cfg = SandboxConfig {
            dataset: DatasetSource::File(path),
            ..SandboxConfig::default()
        };
        let h = harness(cfg);
        assert_eq!(h.sb.records().len(), count);
        let (_, answer) = h.search(&[("r", "UIN", id)]);
        assert_eq!(
            answer["message"]["search_response"][0]["data"]["reg_records"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    let cfg = SandboxConfig {
        dataset: DatasetSource::Json("{\"nope\": 1}".into()),
        ..SandboxConfig::default()
    };
    assert!(Sandbox::start(cfg).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_prefix_moves_every_route() {
    let cfg = SandboxConfig {
        prefix: "/ibr/".into(),
        ..SandboxConfig::default()
    };
    let h = harness(cfg);
    assert!(h.sb.url().ends_with("/ibr"));
    assert!(h.sb.token_url().ends_with("/ibr/oauth2/client/token"));
    let (status, _) = h.search(&[("r", "UIN", "UIN-00000001")]);
    assert_eq!(status, 200);
    let bare = h.sb.url().trim_end_matches("/ibr").to_owned();
    let resp = h
        .http
        .get(format!("{bare}/.well-known/jwks.json"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(h.sb.stats().requests.get("/registry/sync/search"), Some(&1));
}

#[test]
fn stop_frees_the_port_and_drop_stops() {
    let mut sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let port = sb.port();
    sb.stop();
    sb.stop();
    assert!(!sb.is_running());
    let cfg = SandboxConfig {
        port,
        ..SandboxConfig::default()
    };
    let again = Sandbox::start(cfg).expect("the port is free again");
    drop(again);
    let cfg = SandboxConfig {
        port,
        ..SandboxConfig::default()
    };
    drop(Sandbox::start(cfg).expect("drop freed it too"));
    let key = SigningKey::generate(Algorithm::Ed25519, 0).unwrap();
    assert!(to_jwk(&key.verifying_key(), None).get("kid").is_none());
}

#[test]
fn an_idle_keep_alive_connection_does_not_keep_new_ones_waiting() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let port = sb.port();
    // Connections answered once: one stays open and idle, the others are closed (a server
    // with a thread pool has idle threads then).
    let mut held: Vec<Raw> = (0..8)
        .map(|_| {
            let mut c = Raw::open(port);
            assert_eq!(c.exchange(GET_JWKS).status, 200);
            c
        })
        .collect();
    held.truncate(1);
    for _ in 0..4 {
        // 16 new connections at once, all kept open until each is answered, so that none
        // frees a thread for another; then closed (idle threads again for the next round).
        let mut fresh: Vec<Raw> = (0..16).map(|_| Raw::open(port)).collect();
        for c in &mut fresh {
            c.send(GET_JWKS.as_bytes());
        }
        for c in &mut fresh {
            assert_eq!(c.answer().expect("an answer").status, 200);
        }
    }
    assert_eq!(held[0].exchange(GET_JWKS).status, 200);
}

#[test]
fn stop_closes_connections_a_client_holds() {
    let mut h = harness(SandboxConfig::default());
    let mut held = Raw::open(h.sb.port());
    let answer = held.exchange(GET_JWKS);
    assert_eq!((answer.status, answer.header("connection")), (200, None));
    // reqwest keeps its connection in its pool too.
    assert_eq!(h.search(&[("r", "UIN", "UIN-00000001")]).0, 200);
    let jwks_url = h.sb.jwks_url();
    let (done, stopped) = mpsc::channel();
    let sb = std::thread::spawn(move || {
        h.sb.stop();
        done.send(()).unwrap();
        h
    });
    stopped
        .recv_timeout(Duration::from_secs(15))
        .expect("stop() returns while a client holds a connection");
    assert!(held.is_closed());
    let h = sb.join().unwrap();
    assert!(h.http.get(jwks_url).send().is_err());
}

#[test]
fn keep_alive_and_close_are_honoured_both_ways() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let mut c = Raw::open(sb.port());
    for _ in 0..3 {
        let answer = c.exchange(GET_JWKS);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("content-length"),
            Some(answer.body.len().to_string().as_str())
        );
    }
    // An answer that is not 2xx keeps the connection too.
    let answer = c.exchange("GET /nowhere HTTP/1.1\r\nHost: sandbox\r\n\r\n");
    assert_eq!((answer.status, answer.header("connection")), (404, None));
    let answer = c.exchange("GET /.well-known/jwks.json HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(
        (answer.status, answer.header("connection")),
        (200, Some("close"))
    );
    assert!(c.is_closed());
    let mut c = Raw::open(sb.port());
    let answer = c.exchange("GET /.well-known/jwks.json HTTP/1.0\r\n\r\n");
    assert_eq!(
        (answer.status, answer.header("connection")),
        (200, Some("close"))
    );
    assert!(c.is_closed());
    let mut c = Raw::open(sb.port());
    for _ in 0..2 {
        let answer =
            c.exchange("GET /.well-known/jwks.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(
            (answer.status, answer.header("connection")),
            (200, Some("keep-alive"))
        );
    }
}

#[test]
fn chunked_request_bodies_are_read() {
    let h = harness(SandboxConfig::default());
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        h.sb.client_id(),
        h.sb.client_secret()
    );
    let (a, b) = form.split_at(10);
    let mut c = Raw::open(h.sb.port());
    let answer = c.exchange(&format!(
        "POST /oauth2/client/token HTTP/1.1\r\nHost: sandbox\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\r\n\
         {:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        a.len(),
        b.len()
    ));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("connection"), None);
    assert_eq!(c.exchange(GET_JWKS).status, 200);
    // reqwest sends a body of unknown length chunked.
    let body = h.body(
        "search",
        None,
        1,
        &search_message(&[("r", "UIN", "UIN-00000001")]),
    );
    let resp = h
        .http
        .post(format!("{}/registry/sync/search", h.sb.url()))
        .bearer_auth(&h.token)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            body.into_bytes(),
        )))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = resp.json_value().unwrap();
    assert_eq!(h.outcome(&answer), Outcome::Valid);
    assert_eq!(answer["message"]["search_response"][0]["reference_id"], "r");
}

#[test]
fn oversized_heads_unframed_and_oversized_bodies_are_refused() {
    let sb = Sandbox::start(SandboxConfig {
        max_body_bytes: 1024,
        ..SandboxConfig::default()
    })
    .unwrap();
    let mut c = Raw::open(sb.port());
    let big = "a".repeat(70 << 10);
    let answer = c.exchange(&format!(
        "GET /.well-known/jwks.json HTTP/1.1\r\nX-Big: {big}\r\n\r\n"
    ));
    assert_eq!(
        (answer.status, answer.header("connection")),
        (431, Some("close"))
    );
    assert!(c.is_closed());
    let mut c = Raw::open(sb.port());
    let answer = c.exchange(
        "POST /oauth2/client/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n",
    );
    assert_eq!(
        (answer.status, answer.header("connection")),
        (411, Some("close"))
    );
    assert_eq!(answer.error_code(), "err.request.bad");
    let body = "x".repeat(2048);
    let mut c = Raw::open(sb.port());
    let answer = c.exchange(&format!(
        "POST /oauth2/client/token HTTP/1.1\r\nContent-Length: 2048\r\n\r\n{body}"
    ));
    assert_eq!(
        (answer.status, answer.header("connection")),
        (413, Some("close"))
    );
    assert_eq!(answer.error_code(), "err.request.bad");
    let mut c = Raw::open(sb.port());
    let answer = c.exchange(&format!(
        "POST /oauth2/client/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{body}\r\n0\r\n\r\n"
    ));
    assert_eq!(
        (answer.status, answer.header("connection")),
        (413, Some("close"))
    );
    let stats = sb.stats();
    assert_eq!(
        (stats.responses.get(&411), stats.responses.get(&413)),
        (Some(&1), Some(&2))
    );
}

#[test]
fn a_dropped_connection_is_closed_without_an_answer() {
    let sb = Sandbox::start(SandboxConfig {
        faults: Faults::from_value(&json!({"drop_rate": 1.0})).unwrap(),
        ..SandboxConfig::default()
    })
    .unwrap();
    let mut c = Raw::open(sb.port());
    c.send(b"POST /registry/sync/search HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    assert!(c.is_closed());
    assert_eq!(sb.stats().faults.get("drop"), Some(&1));
}

#[test]
fn a_client_expecting_100_continue_is_told_to_send_its_body() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        sb.client_id(),
        sb.client_secret()
    );
    let mut c = Raw::open(sb.port());
    let interim = c.exchange(&format!(
        "POST /oauth2/client/token HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        form.len()
    ));
    assert_eq!(interim.status, 100);
    c.send(form.as_bytes());
    assert_eq!(c.answer().expect("an answer").status, 200);
    assert_eq!(sb.stats().tokens_issued, 1);
}

#[test]
fn strict_mode_refuses_what_the_spec_refuses_with_its_codes() {
    let h = harness(SandboxConfig::default());
    let message = search_message(&[("r", "UIN", "UIN-00000001")]);
    let signed: Value = serde_json::from_str(&h.body("search", None, 1, &message)).unwrap();
    // Each body is re-signed, so that only its shape is at fault.
    let send = |path: &str, f: &dyn Fn(&mut Value)| {
        let mut e = signed.clone();
        f(&mut e);
        let body = envelope::envelope_body(&e["header"], &e["message"], Some(&h.signer)).unwrap();
        let mut body: Value = serde_json::from_str(&body).unwrap();
        if let Some(sig) = e.get("signature").filter(|s| !s.is_string()) {
            body["signature"] = sig.clone();
        }
        h.post_raw(path, body.to_string())
    };
    let sync = "/registry/sync/search";
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation, &str, &str)> = vec![
        (
            sync,
            Box::new(|e| e["header"]["sender_uri"] = Value::Null),
            "err.sender_uri.invalid",
            "header.sender_uri: expected string, found null",
        ),
        (
            "/registry/search",
            Box::new(|e| e["header"]["sender_uri"] = json!("127.0.0.1/cb")),
            "err.sender_uri.invalid",
            "is not a uri",
        ),
        (
            sync,
            Box::new(|e| {
                e["header"].as_object_mut().unwrap().remove("sender_id");
            }),
            "err.sender_id.invalid",
            "header.sender_id: is required",
        ),
        (
            sync,
            Box::new(|e| e["header"]["receiver_id"] = json!(7)),
            "err.receiver_id.invalid",
            "header.receiver_id",
        ),
        (
            sync,
            Box::new(|e| e["header"]["version"] = json!(1)),
            "err.version.not_supported",
            "(rjct.version.invalid)",
        ),
        (
            sync,
            Box::new(|e| e["header"]["is_msg_encrypted"] = json!("no")),
            "err.encryption.invalid",
            "header.is_msg_encrypted",
        ),
        (
            sync,
            Box::new(|e| e["header"]["message_ts"] = json!("yesterday")),
            "err.request.bad",
            "(rjct.message_ts.invalid)",
        ),
        (
            sync,
            Box::new(|e| e["header"]["action"] = json!("subscribe")),
            "err.request.bad",
            "(rjct.action.invalid)",
        ),
        (
            sync,
            Box::new(|e| e["header"]["total_count"] = json!("1")),
            "err.request.bad",
            "(rjct.total_count.invalid)",
        ),
        (
            sync,
            Box::new(|e| e["signature"] = json!(["x"])),
            "err.signature.invalid",
            "signature: expected string",
        ),
        (
            sync,
            Box::new(|e| {
                e["message"]
                    .as_object_mut()
                    .unwrap()
                    .remove("transaction_id");
            }),
            "err.request.bad",
            "message.transaction_id: is required",
        ),
        (
            sync,
            Box::new(|e| e["message"]["search_request"][0]["reference_id"] = json!(5)),
            "err.request.bad",
            "(rjct.reference_id.invalid)",
        ),
        (
            sync,
            Box::new(|e| e["message"]["search_request"][0]["timestamp"] = json!("")),
            "err.request.bad",
            "message.search_request[0].timestamp: \"\" is not a date-time (rjct.timestamp.invalid)",
        ),
        (
            sync,
            Box::new(|e| {
                e["message"]["search_request"][0]["search_criteria"]["query_type"] = json!("sql")
            }),
            "err.request.bad",
            "(rjct.search_criteria.invalid)",
        ),
        (
            sync,
            Box::new(|e| {
                e["message"]["search_request"][0]["search_criteria"]["pagination"]["page_size"] =
                    json!("ten")
            }),
            "err.request.bad",
            "(rjct.pagination.invalid)",
        ),
        (
            sync,
            Box::new(|e| e["message"]["search_request"][0]["locale"] = json!("en")),
            "err.request.bad",
            "does not match ^[a-z]{3,3}$",
        ),
    ];
    let n = cases.len() as u64;
    for (path, mutate, code, text) in cases {
        let (status, answer) = send(path, &*mutate);
        assert_eq!((status, error_code(&answer)), (400, code), "{answer}");
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(text), "{message} lacks {text}");
    }
    assert_eq!(h.sb.stats().spec_violations, n);
    assert_eq!(
        h.sb.stats().signature_failures,
        0,
        "refused before the signature"
    );
    // Conforming variants pass: a locale of three letters, an integer predicate value.
    let (status, answer) = send(sync, &|e| {
        e["message"]["search_request"][0]["locale"] = json!("eng");
        e["message"]["search_request"][0]["search_criteria"]["query_type"] = json!("predicate");
        e["message"]["search_request"][0]["search_criteria"]["query"] = json!([{"seq_num": 1,
            "expression1": {"attribute_name": "UIN", "operator": "eq", "attribute_value": 1}}]);
    });
    assert_eq!(status, 200, "{answer}");

    // Not strict: the same non-conforming body is answered.
    let lax = harness(SandboxConfig {
        strict: false,
        ..SandboxConfig::default()
    });
    let mut header = request_header("search", SP, None, lax.sb.sender_id(), 1);
    header["sender_uri"] = Value::Null;
    let body = envelope::envelope_body(&header, &message, Some(&lax.signer)).unwrap();
    let (status, answer) = lax.post_raw(sync, body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(lax.sb.stats().spec_violations, 0);
}

#[test]
fn one_callback_url_takes_every_callback_or_each_goes_to_its_route() {
    for one in [true, false] {
        let h = harness(SandboxConfig {
            one_callback_url: one,
            callback_workers: 1,
            ..SandboxConfig::default()
        });
        let rx = Receiver::start();
        let base = format!("http://127.0.0.1:{}/dci/callback", rx.port);
        let route = |r: &str| {
            if one {
                "/dci/callback".to_owned()
            } else {
                format!("/dci/callback/{r}")
            }
        };
        let ts = envelope::timestamp(envelope::now_unix());
        let uin = "UIN-00000007";

        let subscribe = json!({"transaction_id": "t-sub", "subscribe_request": [
            {"reference_id": "s1", "timestamp": ts, "subscribe_criteria": {
                "reg_event_type": "spdci-common:RegistryEventType:enrollement", "filter_type": "idtype-value",
                "filter": {"type": "UIN", "value": uin}, "notify_record_type": "Beneficiary"}}]});
        let (status, _) = h.post(
            "/registry/subscribe",
            "subscribe",
            Some(&base),
            1,
            &subscribe,
        );
        assert_eq!(status, 202);
        let (path, callback) = rx.next_at();
        assert_eq!(
            (path, callback["header"]["action"].as_str()),
            (route("on-subscribe"), Some("on-subscribe"))
        );
        let code = callback["message"]["subscribe_response"][0]["subscriptions"][0]["code"].clone();

        let search = search_message(&[("q", "UIN", uin)]);
        let (status, ack) = h.post("/registry/search", "search", Some(&base), 1, &search);
        assert_eq!(status, 202);
        let (path, callback) = rx.next_at();
        assert_eq!(
            (path, callback["header"]["action"].as_str()),
            (route("on-search"), Some("on-search"))
        );

        let txn = json!({"transaction_id": "t-status", "txnstatus_request": {"reference_id": "x",
            "txn_type": "search", "attribute_type": "correlation_id",
            "attribute_value": ack["message"]["correlation_id"]}});
        let (status, _) = h.post("/registry/txn/status", "txn-status", Some(&base), 1, &txn);
        assert_eq!(status, 202);
        let (path, callback) = rx.next_at();
        assert_eq!(
            (path, callback["header"]["action"].as_str()),
            (route("txn/on-status"), Some("txn-on-status"))
        );

        // An enrollment update of the followed record is notified to the subscriber.
        let update = json!({"transaction_id": "t-upd", "enrolled_updates": {"beneficiaries": [
            {"member": {"demographic_info": {"person": {"identifier_type": "UIN", "identifier_value": uin}},
              "programme_identifier": {"programme": {"programme_identifier": "PRG-N"}, "enrolment_status": "Active"}}},
            {"member": {"demographic_info": {"person": {"identifier_type": "UIN", "identifier_value": "UIN-00000008"}},
              "programme_identifier": {"programme": {"programme_identifier": "PRG-N"}, "enrolment_status": "Active"}}}]}});
        let (status, _) = h.post(
            "/registry/sync/enrollment/updates",
            "notify",
            None,
            2,
            &update,
        );
        assert_eq!(status, 200);
        let (path, callback) = rx.next_at();
        assert_eq!(
            (path, callback["header"]["action"].as_str()),
            (route("notify"), Some("notify"))
        );
        assert_eq!(h.outcome(&callback), Outcome::Valid);
        assert_eq!(callback["header"]["receiver_id"], SP);
        let message = &callback["message"];
        assert_eq!(message["transaction_id"], "t-sub");
        let events = message["notify_event"].as_array().unwrap();
        assert_eq!(events.len(), 1, "only the followed record: {message}");
        assert_eq!(
            events[0]["data"]["reg_event_type"],
            "enrollement_status_change"
        );
        assert_eq!(
            events[0]["data"]["reg_records"]["member"]["demographic_info"]["person"]
                ["identifier_value"],
            uin
        );

        let unsubscribe =
            json!({"transaction_id": "t-unsub", "timestamp": ts, "subscription_codes": [code]});
        let (status, _) = h.post(
            "/registry/unsubscribe",
            "unsubscribe",
            Some(&base),
            1,
            &unsubscribe,
        );
        assert_eq!(status, 202);
        let (path, callback) = rx.next_at();
        assert_eq!(
            (path, callback["header"]["action"].as_str()),
            (route("on-unsubscribe"), Some("on-unsubscribe"))
        );
        assert_eq!(callback["message"]["status"], "succ");

        // Unsubscribed: no more events. One delivery thread sends in queue order, so the next
        // callback is the later search's.
        let (status, _) = h.post(
            "/registry/sync/enrollment/updates",
            "notify",
            None,
            2,
            &update,
        );
        assert_eq!(status, 200);
        let (status, _) = h.post(
            "/registry/search",
            "search",
            Some(&base),
            1,
            &search_message(&[("z", "UIN", uin)]),
        );
        assert_eq!(status, 202);
        let (_, callback) = rx.next();
        assert_eq!(
            callback["header"]["action"], "on-search",
            "no notify after unsubscribe"
        );
    }
}

#[test]
fn content_length_with_transfer_encoding_is_refused_as_smuggling() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    for framing in [
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
    ] {
        let mut c = Raw::open(sb.port());
        // Read by Content-Length, the body would end after "0\r\n\r\n"; read chunked, a second
        // request would follow: neither reading is taken.
        let answer = c.exchange(&format!(
            "POST /oauth2/client/token HTTP/1.1\r\n{framing}\r\n\r\n0\r\n\r\n{GET_JWKS}"
        ));
        assert_eq!(
            (answer.status, answer.header("connection")),
            (400, Some("close"))
        );
        assert_eq!(answer.error_code(), "err.request.bad");
        assert!(c.is_closed());
    }
}

#[test]
fn malformed_heads_and_bad_chunk_sizes_are_refused() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    for head in [
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nA: x\r\n folded\r\n\r\n",
    ] {
        let mut c = Raw::open(sb.port());
        let answer = c.exchange(head);
        assert_eq!(
            (answer.status, answer.header("connection")),
            (400, Some("close")),
            "{head:?}"
        );
        assert!(c.is_closed());
    }
    let mut c = Raw::open(sb.port());
    assert_eq!(c.exchange("GET / HTTP/2.0\r\n\r\n").status, 505);
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let mut c = Raw::open(sb.port());
    assert_eq!(
        c.exchange(&format!(
            "GET /.well-known/jwks.json HTTP/1.1\r\n{many}\r\n"
        ))
        .status,
        431
    );
    for chunks in ["zz\r\nab\r\n0\r\n\r\n", "\r\n", "10000000000000000\r\n"] {
        let mut c = Raw::open(sb.port());
        let answer = c.exchange(&format!(
            "POST /oauth2/client/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
        ));
        assert_eq!(
            (answer.status, answer.header("connection")),
            (400, Some("close")),
            "{chunks:?}"
        );
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    let mut c = Raw::open(sb.port());
    c.send(
        format!(
            "{GET_JWKS}GET /nowhere HTTP/1.1\r\n\r\nPOST /oauth2/client/token HTTP/1.1\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\n\
             grant_type=x&a{GET_JWKS}"
        )
        .as_bytes(),
    );
    let statuses: Vec<u16> = (0..4).map(|_| c.answer().unwrap().status).collect();
    assert_eq!(statuses, [200, 404, 400, 200]);
}
