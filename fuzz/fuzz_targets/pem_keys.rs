//! Key text a user or a registry hands over (PROTOCOL §4): `VerifyingKey::from_pem`,
//! `PublicKeys::from_text` and `SigningKey::from_pem` (PKCS#8, PKCS#1, SubjectPublicKeyInfo,
//! any DER inside).
//!
//! Properties: never panics; a public key read writes back to PEM that reads as the same key;
//! a text that holds a private key is never read as public key material; a private key read
//! signs, its own public key verifies that signature, and its PKCS#8 PEM reads back as a key
//! with the same public key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spp_dci_ibr::dci::jwk::PublicKeys;
use spp_dci_ibr::dci::keys::{mentions_private_key, SigningKey, VerifyingKey};

fuzz_target!(|data: &[u8]| {
    let private = std::str::from_utf8(data).is_ok_and(mentions_private_key);
    if PublicKeys::from_text(data).is_ok() {
        assert!(!private, "public key material read from a text holding a private key");
    }
    if let Ok(key) = VerifyingKey::from_pem(data) {
        let pem = key.public_pem().expect("a key we read can be written");
        let back = VerifyingKey::from_pem(pem.as_bytes()).expect("a PEM we wrote reads back");
        assert!(back == key, "public PEM round trip changed the key");
    }
    if let Ok(key) = SigningKey::from_pem(data) {
        assert!(VerifyingKey::from_pem(data).is_err(), "a private key read as a public one");
        let public = key.verifying_key();
        let sig = key.sign(b"(created): 1\n(expires): 2\ndigest: x").expect("sign");
        assert!(public.verify(b"(created): 1\n(expires): 2\ndigest: x", &sig));
        let pem = key.private_pem().expect("a key we read can be written");
        let back = SigningKey::from_pem(pem.as_bytes()).expect("a PEM we wrote reads back");
        assert!(back.verifying_key() == public, "private PEM round trip changed the key");
    }
});
