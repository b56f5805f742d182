//! Key text a user or a registry hands over (PROTOCOL §4): `VerifyingKey::from_pem` and
//! `SigningKey::from_pem` (PKCS#8, PKCS#1, SubjectPublicKeyInfo, any DER inside).
//!
//! Properties: never panics; a public key read writes back to PEM that reads as the same key;
//! a private key read signs, its own public key verifies that signature, and its PKCS#8 PEM
//! reads back as a key with the same public key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spp_dci_ibr::dci::keys::{SigningKey, VerifyingKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = VerifyingKey::from_pem(data) {
        let pem = key.public_pem().expect("a key we read can be written");
        let back = VerifyingKey::from_pem(pem.as_bytes()).expect("a PEM we wrote reads back");
        assert!(back == key, "public PEM round trip changed the key");
    }
    if let Ok(key) = SigningKey::from_pem(data) {
        let public = key.verifying_key();
        let sig = key.sign(b"(created): 1\n(expires): 2\ndigest: x").expect("sign");
        assert!(public.verify(b"(created): 1\n(expires): 2\ndigest: x", &sig));
        let pem = key.private_pem().expect("a key we read can be written");
        let back = SigningKey::from_pem(pem.as_bytes()).expect("a PEM we wrote reads back");
        assert!(back.verifying_key() == public, "private PEM round trip changed the key");
    }
});
