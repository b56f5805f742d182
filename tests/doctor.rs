//! `doctor` against the embedded sandbox: healthy, then with each fault, which the report must
//! name (the right step fails, with the right explanation).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use serde_json::{json, Value};
use spp_dci_ibr::dci::auth::{Auth, CredentialLocation, OAuth2};
use spp_dci_ibr::dci::client::{
    Callback, ClientConfig, DciClient, Retry, Signing, DEFAULT_MAX_RESPONSE,
};
use spp_dci_ibr::dci::doctor::{self, classify_tls, Options, Report, Status};
use spp_dci_ibr::dci::http::{HttpSettings, Secret};
use spp_dci_ibr::dci::jwk::{to_jwk, Jwk};
use spp_dci_ibr::dci::keys::{Algorithm, SigningKey};
use spp_dci_ibr::dci::keysource::{jwks_http, RegistryKeys};
use spp_dci_ibr::sandbox::{Faults, Sandbox, SandboxConfig};

const SP: &str = "doctor.sp.local";
const KEY_ID: &str = "doctor-key-1";

/// Serves `body` as JSON to every request, on a loopback port (our published JWKS).
fn serve_json(body: Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let body = body.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

struct Setup {
    sb: Sandbox,
    key: Arc<SigningKey>,
}

impl Setup {
    fn new(faults: Value) -> Self {
        let sb = Sandbox::start(SandboxConfig {
            faults: Faults::from_value(&faults).unwrap(),
            ..SandboxConfig::default()
        })
        .unwrap();
        let key = Arc::new(SigningKey::generate(Algorithm::Ed25519, 0).unwrap());
        Setup { sb, key }
    }

    fn kid(&self) -> String {
        format!("{SP}|{KEY_ID}|ed25519")
    }

    fn register(&self) {
        self.sb.register_client_key(
            SP,
            Jwk {
                kid: Some(self.kid()),
                key: self.key.verifying_key(),
            },
        );
    }

    fn our_jwks(&self) -> Value {
        json!({"keys": [to_jwk(&self.key.verifying_key(), Some(&self.kid()))]})
    }

    fn client(&self, base_url: Option<String>, secret: Option<&str>) -> DciClient {
        DciClient::new(ClientConfig {
            base_url: base_url.unwrap_or_else(|| self.sb.url()),
            sender_id: SP.into(),
            receiver_id: Some(self.sb.sender_id().into()),
            callback: Callback::None,
            null_sender_uri: false,
            auth: Auth::OAuth2(OAuth2 {
                token_url: self.sb.token_url(),
                client_id: self.sb.client_id().into(),
                client_secret: Secret::new(secret.unwrap_or(self.sb.client_secret())),
                scope: None,
                location: CredentialLocation::Body,
            }),
            signing: Signing::Key {
                key: self.key.clone(),
                key_id: KEY_ID.into(),
            },
            registry_keys: RegistryKeys::Url {
                url: self.sb.jwks_url(),
                allow_http: true,
                http: jwks_http(true, None).unwrap(),
            },
            paths: vec![],
            http: HttpSettings::default(),
            retry: Retry::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE,
            accept_unverified_answers: false,
        })
        .unwrap()
    }

    /// The doctor with our key registered and published.
    fn run(&self) -> Report {
        self.register();
        let opts = Options {
            our_jwks_url: Some(serve_json(self.our_jwks())),
            ..Options::default()
        };
        doctor::run(&self.client(None, None), &opts)
    }
}

fn step<'a>(report: &'a Report, id: &str) -> &'a doctor::Step {
    report
        .step(id)
        .unwrap_or_else(|| panic!("no step {id}: {report:#?}"))
}

/// Asserts `id` has `status` and its found/fix texts contain each of `words`.
fn expect(report: &Report, id: &str, status: Status, words: &[&str]) {
    let s = step(report, id);
    let text = format!("{} || {}", s.found, s.fix.as_deref().unwrap_or(""));
    assert_eq!(s.status, status, "{id}: {text}\n{report:#?}");
    for w in words {
        assert!(text.contains(w), "{id}: '{w}' not in: {text}");
    }
}

#[test]
fn a_healthy_registry_passes_every_step() {
    let s = Setup::new(json!({}));
    let report = s.run();
    let ids: Vec<&str> = report.steps.iter().map(|s| s.id).collect();
    assert_eq!(ids, doctor::STEPS.map(|(id, _)| id).to_vec());
    for st in &report.steps {
        let want = if st.id == "tls" {
            Status::Skip // plain http to loopback
        } else {
            Status::Pass
        };
        assert_eq!(st.status, want, "{st:#?}");
    }
    assert_eq!(report.exit_code(), 0);
    expect(&report, "our_key", Status::Pass, &[&s.kid()]);
    expect(&report, "token", Status::Pass, &["expires in", "Bearer"]);
    expect(&report, "registry_jwks", Status::Pass, &["sandbox-key-1"]);
    let v = report.to_value();
    assert_eq!(v["ok"], true);
    assert_eq!(v["summary"]["pass"], 9);
    // No secret in the report.
    assert!(!v.to_string().contains(s.sb.client_secret()));
}

#[test]
fn unsigned_answers_are_named() {
    let report = Setup::new(json!({"unsigned_rate": 1.0})).run();
    expect(
        &report,
        "answer_signature",
        Status::Fail,
        &["not signed", "must sign"],
    );
    expect(&report, "search", Status::Pass, &[]);
    assert_eq!(report.exit_code(), 3);
}

#[test]
fn a_key_the_registry_does_not_publish_is_named() {
    let report = Setup::new(json!({"wrong_key_rate": 1.0})).run();
    expect(
        &report,
        "answer_signature",
        Status::Fail,
        &[
            "sandbox-key-1-unpublished",
            "do not hold",
            "does not publish",
        ],
    );
}

#[test]
fn a_bad_signature_is_named() {
    let report = Setup::new(json!({"bad_signature_rate": 1.0})).run();
    expect(
        &report,
        "answer_signature",
        Status::Fail,
        &["does not verify", "sandbox-key-1", "verify --explain"],
    );
}

#[test]
fn a_skewed_clock_is_named() {
    let report = Setup::new(json!({"clock_skew_s": 300})).run();
    expect(&report, "clock_skew", Status::Fail, &["s ahead of ours"]);
    let found = &step(&report, "clock_skew").found;
    assert!(
        found.contains("Date header") && found.contains("message_ts"),
        "{found}"
    );
    // Its signatures are not valid yet by our clock, and the step says why.
    expect(
        &report,
        "answer_signature",
        Status::Fail,
        &["not_yet_valid", "clock"],
    );

    // A small skew warns (exit 1), signatures still verify.
    let report = Setup::new(json!({"clock_skew_s": -30})).run();
    expect(&report, "clock_skew", Status::Warn, &["behind ours"]);
    expect(&report, "answer_signature", Status::Pass, &[]);
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn a_refused_token_is_named() {
    // The registry refuses a token its own endpoint issued.
    let report = Setup::new(json!({"bad_token_rate": 1.0})).run();
    expect(&report, "token", Status::Pass, &[]);
    expect(
        &report,
        "search",
        Status::Fail,
        &["401", "refused our token"],
    );
    // The token endpoint refuses the client.
    let report = Setup::new(json!({"refuse_tokens": true})).run();
    expect(
        &report,
        "token",
        Status::Fail,
        &["invalid_client", "client_secret"],
    );
    expect(&report, "search", Status::Skip, &["no token"]);
    // A wrong secret, the same way, and never printed.
    let s = Setup::new(json!({}));
    let secret = "not-the-secret-0123456789";
    let report = doctor::run(&s.client(None, Some(secret)), &Options::default());
    expect(&report, "token", Status::Fail, &["invalid_client"]);
    assert!(!report.to_value().to_string().contains(secret));
}

#[test]
fn our_key_unknown_to_the_registry_is_named() {
    let s = Setup::new(json!({}));
    // Not registered with the registry: it refuses our signature.
    let report = doctor::run(&s.client(None, None), &Options::default());
    expect(&report, "our_key", Status::Skip, &["our_jwks_url"]);
    expect(
        &report,
        "search",
        Status::Fail,
        &["refused our signature", &s.kid()],
    );
    // Published under another kid, and with another key under ours.
    let other = SigningKey::generate(Algorithm::Ed25519, 0).unwrap();
    for (jwks, words) in [
        (
            json!({"keys": [to_jwk(&s.key.verifying_key(), Some("doctor.sp.local|old|ed25519"))]}),
            "does not publish our kid",
        ),
        (
            json!({"keys": [to_jwk(&other.verifying_key(), Some(&s.kid()))]}),
            "another key than ours",
        ),
    ] {
        let opts = Options {
            our_jwks_url: Some(serve_json(jwks)),
            ..Options::default()
        };
        let report = doctor::run(&s.client(None, None), &opts);
        expect(&report, "our_key", Status::Fail, &[words]);
    }
}

#[test]
fn an_unreachable_registry_is_named_and_the_rest_skipped() {
    let s = Setup::new(json!({}));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed once dropped
    let report = doctor::run(
        &s.client(Some(format!("http://127.0.0.1:{port}")), None),
        &Options::default(),
    );
    expect(
        &report,
        "reachable",
        Status::Fail,
        &["cannot connect", "base_url"],
    );
    for id in [
        "token",
        "search",
        "answer_signature",
        "answer_binding",
        "answer_spec",
    ] {
        assert_eq!(step(&report, id).status, Status::Skip, "{id}");
    }
    assert_eq!(report.exit_code(), 3);
}

#[test]
fn registry_jwks_problems_are_named() {
    let s = Setup::new(json!({}));
    s.register();
    let mut client_cfg_url = s.sb.jwks_url();
    client_cfg_url.push_str("-missing");
    let client = DciClient::new(ClientConfig {
        registry_keys: RegistryKeys::Url {
            url: client_cfg_url,
            allow_http: true,
            http: jwks_http(true, None).unwrap(),
        },
        ..config_of(&s)
    })
    .unwrap();
    let report = doctor::run(&client, &Options::default());
    expect(&report, "registry_jwks", Status::Fail, &["HTTP 404"]);
}

fn config_of(s: &Setup) -> ClientConfig {
    ClientConfig {
        base_url: s.sb.url(),
        sender_id: SP.into(),
        receiver_id: Some(s.sb.sender_id().into()),
        callback: Callback::None,
        null_sender_uri: false,
        auth: Auth::OAuth2(OAuth2 {
            token_url: s.sb.token_url(),
            client_id: s.sb.client_id().into(),
            client_secret: Secret::new(s.sb.client_secret()),
            scope: None,
            location: CredentialLocation::Body,
        }),
        signing: Signing::Key {
            key: s.key.clone(),
            key_id: KEY_ID.into(),
        },
        registry_keys: RegistryKeys::None,
        paths: vec![],
        http: HttpSettings::default(),
        retry: Retry::default(),
        max_response_bytes: DEFAULT_MAX_RESPONSE,
        accept_unverified_answers: true,
    }
}

#[test]
fn tls_errors_are_classified() {
    for (text, want) in [
        (
            "error sending request: client error (Connect): invalid peer certificate: \
             certificate expired: verification time 1700000000 (UNIX), but certificate is not \
             valid after 1600000000 (100000000 seconds ago)",
            "expired",
        ),
        (
            "client error (Connect): invalid peer certificate: UnknownIssuer",
            "issuer is not trusted",
        ),
        (
            "invalid peer certificate: certificate not valid for name \"ibr.example\"; \
             certificate is only valid for DnsName(\"other.example\")",
            "hostname mismatch",
        ),
        ("self-signed certificate in chain", "self-signed"),
        ("received fatal alert: HandshakeFailure", "handshake failed"),
    ] {
        let (why, fix) = classify_tls(text).unwrap_or_else(|| panic!("{text}"));
        assert!(why.contains(want), "{text} -> {why}");
        assert!(!fix.is_empty());
    }
    assert!(classify_tls("Connection refused (os error 111)").is_none());
}
