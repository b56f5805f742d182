//! Signing and verification keys (PROTOCOL §2.4, §4).
//!
//! Ed25519 uses `ed25519-dalek`. RSA private-key and verification operations use `ring`
//! (constant-time, assembly-optimised); the `rsa` crate is used only to generate keys and to
//! read key encodings, never for a private-key operation (RUSTSEC-2023-0071 concerns those).

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::Signer as _;
use rand_core::OsRng;
use ring::signature as ring_sig;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use super::error::{Error, Result};

/// Smallest RSA modulus accepted for signing or verification.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted (what the `rsa` crate decodes).
pub const MAX_RSA_BITS: usize = 4096;
/// Largest RSA public exponent accepted (ring's and the `rsa` crate's limit, 2^33 - 1).
pub const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Ed25519,
    Rs256,
}

impl Algorithm {
    /// The lowercase name used in the signature's `algorithm` parameter and in kids.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rs256 => "rs256",
        }
    }

    /// The JOSE `alg` published in a JWK.
    pub fn jose_alg(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "EdDSA",
            Algorithm::Rs256 => "RS256",
        }
    }

    /// Parses a signature-parameter or configuration name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "ed25519" | "eddsa" => Some(Algorithm::Ed25519),
            "rs256" | "rsa-sha256" => Some(Algorithm::Rs256),
            _ => None,
        }
    }
}

/// A private key that signs DCI messages.
#[allow(clippy::large_enum_variant)] // one key per client; boxing the seed buys nothing
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<RsaSigningKey>),
}

pub struct RsaSigningKey {
    pair: ring_sig::RsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    public: RsaPublicKey,
}

/// An RSA public key as big-endian modulus and exponent.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// A public key that verifies DCI signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(RsaPublicKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.algorithm().as_str())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.algorithm().as_str())
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidKey(msg.into())
}

fn parse_pem(text: &[u8]) -> Result<pem::Pem> {
    let text = std::str::from_utf8(text).map_err(|_| invalid("PEM text is not UTF-8"))?;
    pem::parse(text.trim()).map_err(|_| invalid("not a PEM block (expected -----BEGIN ...-----)"))
}

/// Bits of a big-endian integer without leading zero bytes (0 for an empty one).
fn bit_len(n: &[u8]) -> usize {
    n.first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize)
}

fn strip_leading_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b[start..].to_vec()
}

impl RsaPublicKey {
    fn from_rsa(key: &rsa::RsaPublicKey) -> Result<Self> {
        Self::new(key.n().to_bytes_be(), key.e().to_bytes_be())
    }

    /// Checks the modulus size and exponent (PROTOCOL §4).
    pub fn new(n: Vec<u8>, e: Vec<u8>) -> Result<Self> {
        let n = strip_leading_zeros(&n);
        let e = strip_leading_zeros(&e);
        let bits = bit_len(&n);
        if bits < MIN_RSA_BITS {
            return Err(invalid(format!(
                "RSA modulus of {bits} bits is too small (at least {MIN_RSA_BITS})"
            )));
        }
        // The limits of every RSA key reader involved (ring, and the rsa crate that decodes
        // PEM/DER), so that each key accepted here also reads back from the PEM we write.
        if bits > MAX_RSA_BITS {
            return Err(invalid(format!(
                "RSA modulus of {bits} bits is too large (at most {MAX_RSA_BITS})"
            )));
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(invalid("RSA modulus must be odd"));
        }
        let e_value = if e.len() <= 8 {
            e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        } else {
            u64::MAX
        };
        if e_value % 2 == 0 || !(3..=MAX_RSA_EXPONENT).contains(&e_value) {
            return Err(invalid(format!(
                "RSA public exponent must be odd, between 3 and {MAX_RSA_EXPONENT}"
            )));
        }
        Ok(RsaPublicKey { n, e })
    }

    pub fn bits(&self) -> usize {
        bit_len(&self.n)
    }

    fn to_rsa(&self) -> Result<rsa::RsaPublicKey> {
        rsa::RsaPublicKey::new_with_max_size(
            rsa::BigUint::from_bytes_be(&self.n),
            rsa::BigUint::from_bytes_be(&self.e),
            MAX_RSA_BITS,
        )
        .map_err(|_| invalid("RSA public key is not valid"))
    }
}

impl SigningKey {
    /// A new random key. RSA keys are `bits` long (2048 to 4096).
    pub fn generate(algorithm: Algorithm, bits: usize) -> Result<Self> {
        match algorithm {
            Algorithm::Ed25519 => Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(
                &mut OsRng,
            ))),
            Algorithm::Rs256 => {
                if !(MIN_RSA_BITS..=4096).contains(&bits) {
                    return Err(invalid(format!(
                        "RSA key size must be 2048 to 4096 bits, not {bits}"
                    )));
                }
                let key = rsa::RsaPrivateKey::new(&mut OsRng, bits)
                    .map_err(|_| invalid("RSA key generation failed"))?;
                Self::from_rsa_private(&key)
            }
        }
    }

    /// An Ed25519 key from its raw 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self> {
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| invalid(format!("an Ed25519 seed is 32 bytes, not {}", seed.len())))?;
        Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
            &seed,
        )))
    }

    /// A key from PEM: PKCS#8 `PRIVATE KEY` (Ed25519 or RSA) or PKCS#1 `RSA PRIVATE KEY`.
    pub fn from_pem(text: &[u8]) -> Result<Self> {
        let block = parse_pem(text)?;
        match block.tag() {
            "PRIVATE KEY" => Self::from_pkcs8_der(block.contents()),
            "RSA PRIVATE KEY" => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(block.contents())
                    .map_err(|_| invalid("RSA PRIVATE KEY block is not valid PKCS#1"))?;
                Self::from_rsa_private(&key)
            }
            "ENCRYPTED PRIVATE KEY" => Err(invalid(
                "encrypted private keys are not supported; decrypt the key first",
            )),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(invalid(
                "this is a public key; a private key is needed to sign",
            )),
            other => Err(invalid(format!("unsupported PEM block '{other}'"))),
        }
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ok(SigningKey::Ed25519(key));
        }
        let key = rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|_| invalid("PRIVATE KEY is neither an Ed25519 nor an RSA PKCS#8 key"))?;
        Self::from_rsa_private(&key)
    }

    fn from_rsa_private(key: &rsa::RsaPrivateKey) -> Result<Self> {
        use rsa::pkcs8::EncodePrivateKey as _;
        let public = RsaPublicKey::from_rsa(&key.to_public_key())?;
        let der = key
            .to_pkcs8_der()
            .map_err(|_| invalid("RSA key cannot be encoded as PKCS#8"))?;
        let pkcs8 = Zeroizing::new(der.as_bytes().to_vec());
        let pair = ring_sig::RsaKeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| invalid(format!("RSA private key rejected: {e}")))?;
        Ok(SigningKey::Rsa(Box::new(RsaSigningKey {
            pair,
            pkcs8,
            public,
        })))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Ed25519(_) => Algorithm::Ed25519,
            SigningKey::Rsa(_) => Algorithm::Rs256,
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        match self {
            SigningKey::Ed25519(k) => VerifyingKey::Ed25519(k.verifying_key()),
            SigningKey::Rsa(k) => VerifyingKey::Rsa(k.public.clone()),
        }
    }

    /// Signs `data` (Ed25519, or RSASSA-PKCS1-v1_5 with SHA-256).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        match self {
            SigningKey::Ed25519(k) => Ok(k.sign(data).to_bytes().to_vec()),
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.pair.public().modulus_len()];
                k.pair
                    .sign(
                        &ring_sig::RSA_PKCS1_SHA256,
                        &ring::rand::SystemRandom::new(),
                        data,
                        &mut sig,
                    )
                    .map_err(|_| Error::Signature("RSA signing failed".into()))?;
                Ok(sig)
            }
        }
    }

    /// PKCS#8 PEM of the private key (the caller is responsible for where it goes).
    pub fn private_pem(&self) -> Result<Zeroizing<String>> {
        let der: Zeroizing<Vec<u8>> = match self {
            // PKCS#8 v1 (RFC 8410) without the embedded public key: the form OpenSSL 3.0 and
            // `cryptography` read.
            SigningKey::Ed25519(k) => Zeroizing::new(
                ed25519_dalek::pkcs8::KeypairBytes {
                    secret_key: k.to_bytes(),
                    public_key: None,
                }
                .to_pkcs8_der()
                .map_err(|_| invalid("Ed25519 key cannot be encoded"))?
                .as_bytes()
                .to_vec(),
            ),
            SigningKey::Rsa(k) => k.pkcs8.clone(),
        };
        Ok(Zeroizing::new(pem_encode("PRIVATE KEY", &der)))
    }
}

/// PEM with 64-character lines and `\n` endings.
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    let block = pem::Pem::new(tag, der.to_vec());
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// True when `text` holds private key material in any encoding we know of: a PEM or RFC 4716
/// `PRIVATE KEY` block of any kind (PKCS#8, PKCS#1, EC, DSA, OpenSSH, encrypted, PGP), or a PuTTY
/// key file. ("PRIVATE KEY", with its space, cannot occur inside base64.)
pub fn mentions_private_key(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    upper.contains("PRIVATE KEY")
        || upper.contains("PUTTY-USER-KEY-FILE")
        || upper.contains("PRIVATE-LINES")
}

/// The refusal wherever a public key is expected (PROTOCOL §4). Names no key material.
pub fn private_key_refused() -> Error {
    invalid("this holds a private key; give the public key only (never share a private key)")
}

/// The one PEM block of a public key text: a private key anywhere in it is refused, and so is
/// anything but whitespace around the block (which of two keys would be meant?).
fn single_public_block(text: &[u8]) -> Result<pem::Pem> {
    let text = std::str::from_utf8(text).map_err(|_| invalid("PEM text is not UTF-8"))?;
    if mentions_private_key(text) {
        return Err(private_key_refused());
    }
    let text = text.trim_start_matches('\u{feff}').trim();
    let blocks = text.matches("-----BEGIN ").count();
    if blocks > 1 {
        return Err(invalid(format!(
            "the PEM text holds {blocks} blocks; give exactly one public key"
        )));
    }
    if blocks == 0
        || text.matches("-----END ").count() != 1
        || !text.starts_with("-----BEGIN ")
        || !text.ends_with("-----")
    {
        return Err(invalid(
            "not one PEM block (expected -----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY----- and nothing else)",
        ));
    }
    pem::parse(text).map_err(|_| invalid("not a PEM block (expected -----BEGIN ...-----)"))
}

impl VerifyingKey {
    /// A public key from a PEM text holding exactly one SubjectPublicKeyInfo `PUBLIC KEY` or
    /// PKCS#1 `RSA PUBLIC KEY` block; a text holding a private key anywhere is refused.
    pub fn from_pem(text: &[u8]) -> Result<Self> {
        let block = single_public_block(text)?;
        let der = block.contents();
        let read = match block.tag() {
            "PUBLIC KEY" => Self::from_spki_der(der),
            "RSA PUBLIC KEY" => rsa::RsaPublicKey::from_pkcs1_der(der)
                .map_err(|_| invalid("RSA PUBLIC KEY block is not valid PKCS#1"))
                .and_then(|key| Ok(VerifyingKey::Rsa(RsaPublicKey::from_rsa(&key)?))),
            other => Err(invalid(format!(
                "unsupported PEM block '{}'",
                other.chars().take(40).collect::<String>()
            ))),
        };
        // A private key under a public label is still a private key.
        if read.is_err()
            && (SigningKey::from_pkcs8_der(der).is_ok()
                || rsa::RsaPrivateKey::from_pkcs1_der(der).is_ok())
        {
            return Err(private_key_refused());
        }
        read
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            return Ok(VerifyingKey::Ed25519(key));
        }
        use rsa::pkcs8::DecodePublicKey as _;
        let key = rsa::RsaPublicKey::from_public_key_der(der)
            .map_err(|_| invalid("PUBLIC KEY is neither an Ed25519 nor an RSA key"))?;
        Ok(VerifyingKey::Rsa(RsaPublicKey::from_rsa(&key)?))
    }

    /// An Ed25519 key from its 32 raw bytes.
    pub fn ed25519_from_bytes(bytes: &[u8]) -> Result<Self> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| {
            invalid(format!(
                "an Ed25519 public key is 32 bytes, not {}",
                bytes.len()
            ))
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map(VerifyingKey::Ed25519)
            .map_err(|_| invalid("Ed25519 public key is not a valid curve point"))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            VerifyingKey::Ed25519(_) => Algorithm::Ed25519,
            VerifyingKey::Rsa(_) => Algorithm::Rs256,
        }
    }

    /// True when `signature` is a valid signature of `data` under this key.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        match self {
            VerifyingKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .map(|sig| k.verify_strict(data, &sig).is_ok())
                .unwrap_or(false),
            VerifyingKey::Rsa(k) => ring_sig::RsaPublicKeyComponents { n: &k.n, e: &k.e }
                .verify(&ring_sig::RSA_PKCS1_2048_8192_SHA256, data, signature)
                .is_ok(),
        }
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Result<Vec<u8>> {
        match self {
            VerifyingKey::Ed25519(k) => k
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|_| invalid("Ed25519 key cannot be encoded")),
            VerifyingKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey as _;
                k.to_rsa()?
                    .to_public_key_der()
                    .map(|d| d.as_bytes().to_vec())
                    .map_err(|_| invalid("RSA key cannot be encoded"))
            }
        }
    }

    /// SubjectPublicKeyInfo PEM, 64-character lines, `\n` endings (PROTOCOL §4).
    pub fn public_pem(&self) -> Result<String> {
        Ok(pem_encode("PUBLIC KEY", &self.spki_der()?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_1_signs_the_empty_message() {
        // RFC 8032 §7.1, TEST 1.
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = SigningKey::from_seed(&seed).unwrap();
        let VerifyingKey::Ed25519(public) = key.verifying_key() else {
            panic!()
        };
        assert_eq!(
            public.to_bytes().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = key.sign(b"").unwrap();
        assert_eq!(
            sig,
            hex(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                 5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        assert!(key.verifying_key().verify(b"", &sig));
        assert!(!key.verifying_key().verify(b"x", &sig));
    }

    #[test]
    fn rfc8032_test_2_and_3() {
        let cases = [
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
                 18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (seed, msg, want) in cases {
            let key = SigningKey::from_seed(&hex(seed)).unwrap();
            assert_eq!(key.sign(&hex(msg)).unwrap(), hex(want));
        }
    }

    #[test]
    fn generated_keys_round_trip_through_pem() {
        for alg in [Algorithm::Ed25519, Algorithm::Rs256] {
            let key = SigningKey::generate(alg, 2048).unwrap();
            let again = SigningKey::from_pem(key.private_pem().unwrap().as_bytes()).unwrap();
            assert_eq!(again.algorithm(), alg);
            let public =
                VerifyingKey::from_pem(key.verifying_key().public_pem().unwrap().as_bytes())
                    .unwrap();
            assert!(public == key.verifying_key());
            let sig = again.sign(b"data").unwrap();
            assert!(public.verify(b"data", &sig));
        }
    }

    #[test]
    fn rsa_public_keys_are_held_to_what_every_reader_accepts() {
        let odd = |bits: usize| {
            let mut n = vec![0xffu8; bits / 8];
            n[0] = 0x80;
            n
        };
        assert!(RsaPublicKey::new(odd(2048), vec![1, 0, 1]).is_ok());
        assert!(
            RsaPublicKey::new(vec![], vec![1, 0, 1]).is_err(),
            "empty modulus"
        );
        assert!(
            RsaPublicKey::new(vec![0, 0], vec![1, 0, 1]).is_err(),
            "zero modulus"
        );
        assert!(RsaPublicKey::new(odd(4096), vec![3]).is_ok());
        assert!(
            RsaPublicKey::new(odd(4104), vec![1, 0, 1]).is_err(),
            "too large"
        );
        assert!(
            RsaPublicKey::new(odd(2040), vec![1, 0, 1]).is_err(),
            "too small"
        );
        let mut even = odd(2048);
        *even.last_mut().unwrap() = 0xfe;
        assert!(
            RsaPublicKey::new(even, vec![1, 0, 1]).is_err(),
            "even modulus"
        );
        for e in [vec![1], vec![2], vec![1, 0, 0], vec![2, 0, 0, 0, 1]] {
            assert!(RsaPublicKey::new(odd(2048), e).is_err());
        }
        // Whatever is accepted writes a PEM that reads back.
        let key = VerifyingKey::Rsa(RsaPublicKey::new(odd(4096), vec![1, 0, 1]).unwrap());
        let pem = key.public_pem().unwrap();
        assert!(VerifyingKey::from_pem(pem.as_bytes()).unwrap() == key);
    }

    #[test]
    fn wrong_pem_kinds_are_named() {
        let key = SigningKey::generate(Algorithm::Ed25519, 0).unwrap();
        let public = key.verifying_key().public_pem().unwrap();
        let err = SigningKey::from_pem(public.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("public key"), "{err}");
        let err = VerifyingKey::from_pem(key.private_pem().unwrap().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("private key"), "{err}");
        // ... also under a public label.
        let der = pem::parse(key.private_pem().unwrap().as_bytes()).unwrap();
        for label in ["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"] {
            let relabelled = pem_encode(label, der.contents());
            let err = VerifyingKey::from_pem(relabelled.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("private key"), "{label}: {err}");
        }
        assert!(SigningKey::from_pem(b"garbage").is_err());
        assert!(SigningKey::from_seed(&[0u8; 31]).is_err());
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
