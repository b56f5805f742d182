//! The shared signature, verification and JWK vectors (spec/signature_vectors.json, a copy of the shared vectors), through the core.

use serde_json::Value;
use spp_dci_ibr::dci::canonical::{self, HeaderForm};
use spp_dci_ibr::dci::jwk::jwk_to_pem;
use spp_dci_ibr::dci::keys::{SigningKey, VerifyingKey};
use spp_dci_ibr::dci::signature::{self, Keys, Policy};

fn vectors() -> Value {
    let path = std::env::var("SPP_DCI_VECTORS")
        .unwrap_or_else(|_| format!("{}/spec/signature_vectors.json", env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn key_pem<'a>(v: &'a Value, alg: &str, part: &str) -> &'a str {
    v["keys"][alg][part].as_str().unwrap()
}

#[test]
fn sign_cases_reproduce_canonical_digest_and_signature() {
    let v = vectors();
    let cases = v["sign_cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let alg = case["algorithm"].as_str().unwrap();
        let (h, m) = (&case["header"], &case["message"]);
        let payload = canonical::signing_payload(&h, &m, HeaderForm::AsReceived).unwrap();
        assert_eq!(
            payload,
            case["canonical"].as_str().unwrap(),
            "{name}: canonical"
        );
        assert_eq!(
            signature::digest(&payload),
            case["digest"].as_str().unwrap(),
            "{name}: digest"
        );
        let created = case["created"].as_i64().unwrap();
        let expires = case["expires"].as_i64().unwrap();
        assert_eq!(
            signature::signing_string(created, expires, case["digest"].as_str().unwrap()),
            case["signing_string"].as_str().unwrap()
        );
        let key = SigningKey::from_pem(key_pem(&v, alg, "private_pem").as_bytes()).unwrap();
        let kid = case["header"]["sender_id"].as_str().unwrap();
        let key_id = v["keys"][alg]["jwk"]["kid"]
            .as_str()
            .unwrap()
            .split('|')
            .nth(1)
            .unwrap();
        let sig = signature::sign(&h, &m, &key, kid, key_id, created, expires - created).unwrap();
        assert_eq!(
            sig,
            case["signature"].as_str().unwrap(),
            "{name}: signature"
        );
        // And it verifies with the published public key.
        let public = VerifyingKey::from_pem(key_pem(&v, alg, "public_pem").as_bytes()).unwrap();
        let check =
            signature::check(&sig, &h, &m, &Keys::One(&public), Policy::at(created)).unwrap();
        assert!(check.is_valid(), "{name}: {check:?}");
    }
}

#[test]
fn verify_cases_give_their_named_outcome() {
    let v = vectors();
    for case in v["verify_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let key = VerifyingKey::from_pem(
            key_pem(&v, case["key"].as_str().unwrap(), "public_pem").as_bytes(),
        )
        .unwrap();
        let check = signature::check(
            case["signature"].as_str().unwrap(),
            &&case["header"],
            &&case["message"],
            &Keys::One(&key),
            Policy::at(case["now"].as_i64().unwrap()),
        )
        .unwrap();
        assert_eq!(
            check.outcome.as_str(),
            case["expect"].as_str().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn jwk_cases_give_the_pem_or_an_error() {
    let v = vectors();
    for case in v["jwk_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let got = jwk_to_pem(&case["jwk"]);
        match case["expect"].as_str().unwrap() {
            "ok" => assert_eq!(got.unwrap(), case["pem"].as_str().unwrap(), "{name}"),
            _ => assert!(got.is_err(), "{name}: expected an error"),
        }
    }
}

#[test]
fn published_jwks_of_the_vector_keys_match_the_vectors() {
    let v = vectors();
    for alg in ["ed25519", "rs256"] {
        let jwk = &v["keys"][alg]["jwk"];
        let key = VerifyingKey::from_pem(key_pem(&v, alg, "public_pem").as_bytes()).unwrap();
        let ours = spp_dci_ibr::dci::jwk::to_jwk(&key, jwk["kid"].as_str());
        assert_eq!(&ours, jwk, "{alg}");
    }
}

/// `signature::explain` on the vectors: its outcome is `check`'s, and it names the canonical
/// digest, the signing string, the key tried and the form that verified or why none did.
#[test]
fn explain_names_digest_key_and_form() {
    use spp_dci_ibr::dci::jwk::Jwks;
    use spp_dci_ibr::dci::signature::explain;

    let v = vectors();
    let sign_case = &v["sign_cases"][0];
    for case in v["verify_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let key = VerifyingKey::from_pem(
            key_pem(&v, case["key"].as_str().unwrap(), "public_pem").as_bytes(),
        )
        .unwrap();
        let e = explain(
            case["signature"].as_str().unwrap(),
            &&case["header"],
            &&case["message"],
            &Keys::One(&key),
            Policy::at(case["now"].as_i64().unwrap()),
        )
        .unwrap();
        assert_eq!(
            e.check.outcome.as_str(),
            case["expect"].as_str().unwrap(),
            "{name}"
        );
        let payload =
            canonical::signing_payload(&&case["header"], &&case["message"], HeaderForm::AsReceived)
                .unwrap();
        assert_eq!(e.canonical_digest, signature::digest(&payload), "{name}");
        match case["expect"].as_str().unwrap() {
            "valid" => {
                assert_eq!(e.verified_form, Some(HeaderForm::AsReceived), "{name}");
                assert!(e.reasons.is_empty(), "{name}: {:?}", e.reasons);
                let k = e.key.as_ref().unwrap();
                assert_eq!(k.chosen, "the one key given");
                assert!(k.forms[0].verified);
            }
            "malformed" => {
                assert!(e.signing_string.is_none() && e.key.is_none(), "{name}");
                assert!(
                    e.reasons[0].contains("malformed"),
                    "{name}: {:?}",
                    e.reasons
                );
            }
            _ => {
                assert!(
                    e.verified_form.is_none() || name.contains("skew") || name.contains("expire"),
                    "{name}"
                );
                assert!(!e.reasons.is_empty(), "{name}");
            }
        }
        if name == "tampered message" {
            // Every normalised form was tried with the key, none verified.
            let k = e.key.as_ref().unwrap();
            assert!(k.forms.iter().all(|f| !f.verified), "{name}");
            assert!(
                e.reasons.iter().any(|r| r.contains("does not verify")),
                "{name}"
            );
        }
        if name.starts_with("expired") {
            // The bytes verify; the time refuses it, and the reason says by how much.
            assert_eq!(e.verified_form, Some(HeaderForm::AsReceived));
            assert!(
                e.reasons[0].contains("1 s before our clock"),
                "{:?}",
                e.reasons
            );
        }
        if name.starts_with("wrong key") {
            assert!(
                e.reasons.iter().any(|r| r.contains("cannot verify")),
                "{:?}",
                e.reasons
            );
        }
    }
    // Valid, unknown kid, and a wrong kid with the only key of a set.
    let field = sign_case["signature"].as_str().unwrap();
    let (h, m) = (&sign_case["header"], &sign_case["message"]);
    let at = Policy::at(sign_case["created"].as_i64().unwrap());
    let vector_jwk = v["keys"]["ed25519"]["jwk"].clone();
    let rsa_jwk = v["keys"]["rs256"]["jwk"].clone();
    let mut renamed = vector_jwk.clone();
    renamed["kid"] = "openspp.example.org|key-ed-2|ed25519".into();
    let set = |keys: Vec<Value>| Jwks::from_value(&serde_json::json!({ "keys": keys })).unwrap();

    let both = set(vec![vector_jwk.clone(), rsa_jwk.clone()]);
    let e = explain(field, &h, &m, &Keys::Set(&both), at).unwrap();
    assert!(e.check.is_valid());
    assert_eq!(e.key.as_ref().unwrap().chosen, "kid matches");
    assert_eq!(
        e.signing_string.as_deref(),
        sign_case["signing_string"].as_str()
    );
    assert_eq!(e.canonical_digest, sign_case["digest"].as_str().unwrap());

    let unknown = set(vec![renamed.clone(), rsa_jwk]);
    let e = explain(field, &h, &m, &Keys::Set(&unknown), at).unwrap();
    assert_eq!(e.check.outcome.as_str(), "unknown_key");
    assert!(e.key.is_none());
    assert!(
        e.reasons[0].starts_with("no key for kid openspp.example.org|key-ed-1|ed25519"),
        "{:?}",
        e.reasons
    );
    assert_eq!(e.available_kids.len(), 2);

    let wrong_kid = set(vec![renamed]);
    let e = explain(field, &h, &m, &Keys::Set(&wrong_kid), at).unwrap();
    assert!(
        e.check.is_valid(),
        "the only key of a set is tried whatever the kid"
    );
    assert_eq!(e.key.as_ref().unwrap().chosen, "only key of the set");
}
