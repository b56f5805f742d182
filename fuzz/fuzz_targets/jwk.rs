//! A fetched JWKS body and the JWKs in it (PROTOCOL §4): `Jwks::from_slice`, `Jwk::from_value`,
//! `jwk_to_pem`, and the PEM read back with `VerifyingKey::from_pem`.
//!
//! Properties: never panics; a JWKS, a JWK or any public key material read holds no private
//! member anywhere; a JWKS keeps at most `MAX_JWKS_KEYS` keys and every entry is either a key or
//! a skipped one; a key we publish (`to_jwk`) reads back as the same key; a
//! JWK we accept converts to PEM (`jwk_to_pem`), SubjectPublicKeyInfo with 64-character lines
//! and `\n` endings, that reads back as the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spp_dci_ibr::dci::jwk::{jwk_to_pem, to_jwk, Jwk, Jwks, PublicKeys, MAX_JWKS_KEYS};
use spp_dci_ibr::dci::keys::VerifyingKey;

fn check_pem(pem: &str, key: &VerifyingKey) {
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"), "{pem}");
    assert!(!pem.contains('\r'));
    assert!(pem.lines().all(|l| l.len() <= 64), "{pem}");
    let back = VerifyingKey::from_pem(pem.as_bytes())
        .unwrap_or_else(|e| panic!("a PEM we wrote does not read back: {e}\n{pem}"));
    assert!(&back == key, "PEM round trip changed the key");
    assert_eq!(back.public_pem().expect("re-encode"), pem);
}

/// True when an object anywhere in `value` has a member only private keys have.
fn holds_private_member(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"]
                .iter()
                .any(|m| map.contains_key(*m))
                || map.values().any(holds_private_member)
        }
        Value::Array(items) => items.iter().any(holds_private_member),
        _ => false,
    }
}

fn check_jwk(value: &Value) {
    let Ok(jwk) = Jwk::from_value(value) else {
        assert!(jwk_to_pem(value).is_err());
        return;
    };
    assert!(!holds_private_member(value), "a JWK with a private member was read");
    let published = to_jwk(&jwk.key, jwk.kid.as_deref());
    let again = Jwk::from_value(&published).expect("a JWK we publish reads back");
    assert!(again.key == jwk.key && again.kid == jwk.kid, "JWK round trip changed the key");
    let pem = jwk_to_pem(value)
        .unwrap_or_else(|e| panic!("an accepted JWK cannot be written as PEM: {e}"));
    check_pem(&pem, &jwk.key);
}

fuzz_target!(|data: &[u8]| {
    if PublicKeys::from_text(data).is_ok() {
        if let Ok(doc) = serde_json::from_slice::<Value>(data) {
            assert!(!holds_private_member(&doc), "public key material with a private member");
        }
    }
    if let Ok(jwks) = Jwks::from_slice(data) {
        assert!(jwks.keys.len() <= MAX_JWKS_KEYS);
        let doc: Value = serde_json::from_slice(data).expect("a parsed JWKS is JSON");
        assert!(!holds_private_member(&doc), "a JWKS with a private member was read");
        assert_eq!(
            jwks.keys.len() + jwks.skipped.len(),
            doc["keys"].as_array().map_or(0, Vec::len),
            "every entry is a key or a skipped one"
        );
        let again = Jwks::from_value(&jwks.to_value()).expect("a JWKS we publish reads back");
        assert_eq!(again.keys.len(), jwks.keys.len());
        assert!(again.skipped.is_empty());
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_jwk(&value);
        for entry in value
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check_jwk(entry);
        }
    }
});
