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
