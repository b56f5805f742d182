//! A received callback body (PROTOCOL §3, §8): `strict_json::parse` and `callback::verify` on
//! the route that takes every action, with one configured Ed25519 key (seed 0..32, kid
//! `ibr.example.org|k1|ed25519`, the key of the seeds in `seeds/callback`).
//!
//! Properties: never panics; the key lookup is called at most once, and never for a body that
//! is not strict JSON or whose signature field is over `MAX_FIELD_BYTES`; a body strict JSON
//! refuses is refused 400/413; an accepted callback's header and message, written as received,
//! are exactly the bytes the input's signature covers (what is returned is what verified), and
//! the kid names its sender.
#![no_main]

use std::cell::Cell;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spp_dci_ibr::dci::callback::{verify, KeyMaterial, Limits, RefusalKind, Route, Verdict};
use spp_dci_ibr::dci::canonical::{signing_payload, HeaderForm};
use spp_dci_ibr::dci::jwk::to_jwk;
use spp_dci_ibr::dci::keys::{SigningKey, VerifyingKey};
use spp_dci_ibr::dci::signature::{
    digest, parse_params, signing_string, split_kid, MAX_FIELD_BYTES,
};
use spp_dci_ibr::dci::strict_json;

const NOW: i64 = 1_767_225_600;
const SENDER: &str = "ibr.example.org";
const KID: &str = "ibr.example.org|k1|ed25519";

fn key() -> &'static VerifyingKey {
    static KEY: OnceLock<VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let seed: Vec<u8> = (0..32).collect();
        SigningKey::from_seed(&seed).expect("seed").verifying_key()
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let lookups = Cell::new(0);
    let verdict = verify(
        data,
        Some("application/json"),
        Route::Any,
        &limits,
        NOW,
        |sender: &str, _kid: Option<&str>| {
            lookups.set(lookups.get() + 1);
            Ok((sender == SENDER).then(|| vec![KeyMaterial::Json(to_jwk(key(), Some(KID)))]))
        },
    );
    let verdict = verdict.expect("no lookup failure, no unreadable key");
    assert!(
        lookups.get() <= 1,
        "key lookup called {} times",
        lookups.get()
    );
    let parsed = strict_json::parse(data, limits.max_depth);
    let Ok(doc) = parsed else {
        assert_eq!(
            lookups.get(),
            0,
            "lookup for a body that is not strict JSON"
        );
        let Verdict::Refused(r) = verdict else {
            panic!("accepted a body strict JSON refuses")
        };
        assert!(
            matches!(r.kind, RefusalKind::Malformed | RefusalKind::TooLarge),
            "{r:?}"
        );
        return;
    };
    let field = doc
        .get("signature")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if field.len() > MAX_FIELD_BYTES {
        assert_eq!(lookups.get(), 0, "lookup for an oversized signature field");
    }
    if let Verdict::Accepted(v) = verdict {
        // The sender's only key is tried whatever the kid's key id: only its sender part is bound.
        assert_eq!(v.sender_id, SENDER);
        assert_eq!(split_kid(&v.kid).map(|(sender, _, _)| sender), Some(SENDER));
        let params = parse_params(field).expect("an accepted signature parses");
        let payload = signing_payload(&&v.header, &&v.message, HeaderForm::AsReceived).unwrap();
        let text = signing_string(params.created, params.expires, &digest(&payload));
        assert!(
            key().verify(text.as_bytes(), &params.signature),
            "returned header/message are not what the signature covers: {}",
            STANDARD.encode(&params.signature)
        );
    }
});
