//! The `signature` field of a received envelope (PROTOCOL §2.5, §3): `parse_params` and `check`
//! against the vector header and message (fixtures/signed_search.json), with one fixed key and
//! with the vector JWKS, both as received and with the header's schema defaults removed.
//!
//! Properties: never panics; `check` always answers; an unparsable field is `malformed`; a field
//! over `MAX_FIELD_BYTES` is not parsed; a parsed field written back and parsed again gives the
//! same parameters; `valid` only for a signature the vector keys really made (no forgery), and
//! only when the kid's sender part (if any) is the header's `sender_id`.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spp_dci_ibr::dci::jwk::Jwks;
use spp_dci_ibr::dci::signature::{
    check, parse_params, Keys, Outcome, Policy, SignatureParams, MAX_FIELD_BYTES,
};

struct Fixture {
    header: Value,
    /// The header without `version` and `is_msg_encrypted`: verifies only through the
    /// normalised forms (the second and third attempts).
    header_without_defaults: Value,
    message: Value,
    jwks: Jwks,
    now: i64,
    /// (created, expires, signature bytes) of the vector signatures.
    genuine: Vec<(i64, i64, Vec<u8>)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let fx: Value = serde_json::from_str(include_str!("../fixtures/signed_search.json"))
            .expect("fixture is JSON");
        let header = fx["header"].clone();
        let mut header_without_defaults = header.clone();
        let h = header_without_defaults
            .as_object_mut()
            .expect("header object");
        h.remove("version");
        h.remove("is_msg_encrypted");
        let genuine = fx["signatures"]
            .as_array()
            .expect("signatures")
            .iter()
            .map(|s| {
                let p = parse_params(s.as_str().expect("string")).expect("vector parses");
                (p.created, p.expires, p.signature)
            })
            .collect();
        Fixture {
            header,
            header_without_defaults,
            message: fx["message"].clone(),
            jwks: Jwks::from_value(&fx["jwks"]).expect("vector JWKS"),
            now: fx["now"].as_i64().expect("now"),
            genuine,
        }
    })
}

/// The parameters written back the way `sign_payload` writes them.
fn write_params(p: &SignatureParams) -> String {
    let kid = p
        .kid
        .as_deref()
        .map(|k| format!("kidId=\"{k}\", "))
        .unwrap_or_default();
    format!(
        "namespace=\"dci\", {kid}algorithm=\"{}\", created=\"{}\", expires=\"{}\", \
         headers=\"(created) (expires) digest\", signature=\"{}\"",
        p.algorithm,
        p.created,
        p.expires,
        STANDARD.encode(&p.signature)
    )
}

fuzz_target!(|field: &str| {
    let fx = fixture();
    let parsed = parse_params(field);
    if let Ok(p) = &parsed {
        let written = write_params(p);
        // Writing adds the namespace and headers parameters: past the length cap it is refused.
        if written.len() <= MAX_FIELD_BYTES {
            let again = parse_params(&written).expect("written parameters parse");
            assert_eq!(&again, p, "parameters do not survive a round trip");
        }
    }
    if field.len() > MAX_FIELD_BYTES {
        assert!(parsed.is_err(), "a field over the length cap was parsed");
    }
    let single = &fx.jwks.keys[0].key;
    for keys in [Keys::One(single), Keys::Set(&fx.jwks)] {
        for header in [&fx.header, &fx.header_without_defaults] {
            let result = check(field, &header, &&fx.message, &keys, Policy::at(fx.now))
                .expect("check answers for a shallow header and message");
            if parsed.is_err() {
                assert_eq!(result.outcome, Outcome::Malformed);
            }
            if result.outcome == Outcome::Valid {
                let p = parsed.as_ref().expect("a valid signature parsed");
                assert!(
                    fx.genuine
                        .contains(&(p.created, p.expires, p.signature.clone())),
                    "forged signature accepted: {field:?}"
                );
                assert!(
                    p.kid_sender().is_none_or(|s| s == "openspp.example.org"),
                    "kid of another sender accepted: {field:?}"
                );
            }
        }
    }
});
