//! JWK and JWKS (PROTOCOL §4): reading published keys and publishing ours, and
//! [`PublicKeys`], the one reader of public key material given as text, a JWK or a JWKS.

use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::error::{Error, Result};
use super::keys::{
    mentions_private_key, private_key_refused, Algorithm, RsaPublicKey, VerifyingKey,
};
use super::strict_json;

/// Largest JWKS document accepted (PROTOCOL §4).
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys read from one JWKS.
pub const MAX_JWKS_KEYS: usize = 256;

/// base64url, padding optional on input.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// JWK members that only private (or secret) keys have (RFC 7518 §6.2.2, §6.3.2, §6.4.1; `priv`
/// of the AKP drafts).
const PRIVATE_MEMBERS: [&str; 9] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"];

/// Refuses a JSON document (a JWK, a JWKS) that holds private key material anywhere: an object
/// with a private member at any depth, or a string holding a private key PEM.
fn refuse_private(value: &Value) -> Result<()> {
    let private = match value {
        Value::Object(map) => {
            if let Some(name) = PRIVATE_MEMBERS.iter().find(|m| map.contains_key(**m)) {
                return Err(invalid(format!(
                    "a JWK carries the private member '{name}': this holds a private key; \
                     give public keys only (never share a private key)"
                )));
            }
            return map.values().try_for_each(refuse_private);
        }
        Value::Array(items) => return items.iter().try_for_each(refuse_private),
        Value::String(text) => mentions_private_key(text),
        _ => false,
    };
    if private {
        Err(private_key_refused())
    } else {
        Ok(())
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidKey(msg.into())
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str> {
    match jwk.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(format!("JWK member '{name}' must be a string"))),
        None => Err(invalid(format!("JWK has no '{name}' member"))),
    }
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>> {
    let text = member(jwk, name)?;
    B64URL
        .decode(text)
        .map_err(|_| invalid(format!("JWK member '{name}' is not base64url")))
}

/// A public JWK read into a verification key, with its kid when it has one.
#[derive(Clone, Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    pub key: VerifyingKey,
}

impl Jwk {
    /// Reads a public JWK. The algorithm comes from `kty`/`crv` (and `alg` when present).
    pub fn from_value(value: &Value) -> Result<Self> {
        refuse_private(value)?;
        let Value::Object(jwk) = value else {
            return Err(invalid("a JWK must be a JSON object"));
        };
        let kty = member(jwk, "kty")?;
        let alg = match jwk.get("alg") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(a.as_str()),
            Some(_) => return Err(invalid("JWK member 'alg' must be a string")),
        };
        let key = match kty {
            "OKP" => {
                let crv = member(jwk, "crv")?;
                if crv != "Ed25519" {
                    return Err(invalid(format!(
                        "OKP curve '{crv}' is not supported (only Ed25519 signs)"
                    )));
                }
                if alg.is_some_and(|a| a != "EdDSA" && a != "Ed25519") {
                    return Err(invalid("an Ed25519 JWK must have alg EdDSA"));
                }
                VerifyingKey::ed25519_from_bytes(&b64_member(jwk, "x")?)?
            }
            "RSA" => {
                if alg.is_some_and(|a| a != "RS256") {
                    return Err(invalid("an RSA JWK must have alg RS256"));
                }
                let n = b64_member(jwk, "n")?;
                let e = b64_member(jwk, "e")?;
                VerifyingKey::Rsa(RsaPublicKey::new(n, e)?)
            }
            other => return Err(invalid(format!("JWK key type '{other}' is not supported"))),
        };
        if let Some(Value::String(usage)) = jwk.get("use") {
            if usage != "sig" {
                return Err(invalid(format!("JWK 'use' is '{usage}', not 'sig'")));
            }
        }
        let kid = match jwk.get("kid") {
            Some(Value::String(k)) => Some(k.clone()),
            _ => None,
        };
        Ok(Jwk { kid, key })
    }
}

/// The published JWK of a public key: `kid` `<sender_id>|<key_id>|<alg>`, `use` sig, JOSE `alg`.
pub fn to_jwk(key: &VerifyingKey, kid: Option<&str>) -> Value {
    let alg = key.algorithm();
    let mut jwk = match key {
        VerifyingKey::Ed25519(k) => json!({
            "kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(k.as_bytes()),
        }),
        VerifyingKey::Rsa(k) => json!({
            "kty": "RSA", "n": B64URL.encode(&k.n), "e": B64URL.encode(&k.e),
        }),
    };
    let obj = jwk.as_object_mut().expect("object literal");
    obj.insert("use".into(), "sig".into());
    obj.insert("alg".into(), alg.jose_alg().into());
    if let Some(kid) = kid {
        obj.insert("kid".into(), kid.into());
    }
    jwk
}

/// The kid we publish and sign with.
pub fn make_kid(sender_id: &str, key_id: &str, algorithm: Algorithm) -> String {
    format!("{sender_id}|{key_id}|{}", algorithm.as_str())
}

/// `jwk_to_pem`: a public JWK as SubjectPublicKeyInfo PEM.
pub fn jwk_to_pem(value: &Value) -> Result<String> {
    Jwk::from_value(value)?.key.public_pem()
}

/// A key that a JWKS could not use, and why.
#[derive(Clone, Debug)]
pub struct SkippedKey {
    pub kid: Option<String>,
    pub reason: String,
}

/// A parsed `{"keys": [...]}` document.
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
    pub skipped: Vec<SkippedKey>,
}

impl Jwks {
    /// Parses a JWKS. Keys that cannot verify DCI signatures (other key types, encryption keys,
    /// malformed members) are skipped and listed in `skipped`; the rest stay usable. A document
    /// holding a private key anywhere is refused whole.
    pub fn from_value(value: &Value) -> Result<Self> {
        refuse_private(value)?;
        let keys = match value {
            Value::Object(doc) => match doc.get("keys") {
                Some(Value::Array(keys)) => keys,
                _ => return Err(invalid("a JWKS must have a 'keys' array")),
            },
            _ => return Err(invalid("a JWKS must be a JSON object")),
        };
        if keys.len() > MAX_JWKS_KEYS {
            return Err(invalid(format!(
                "JWKS has {} keys (at most {MAX_JWKS_KEYS})",
                keys.len()
            )));
        }
        let mut out = Jwks::default();
        for entry in keys {
            match Jwk::from_value(entry) {
                Ok(jwk) => out.keys.push(jwk),
                Err(e) => out.skipped.push(SkippedKey {
                    kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason: e.to_string(),
                }),
            }
        }
        Ok(out)
    }

    /// Parses JWKS JSON text, refusing documents over [`MAX_JWKS_BYTES`].
    pub fn from_slice(body: &[u8]) -> Result<Self> {
        if body.len() > MAX_JWKS_BYTES {
            return Err(invalid(format!(
                "JWKS is {} bytes (at most {MAX_JWKS_BYTES})",
                body.len()
            )));
        }
        let value = strict_json::parse(body, strict_json::MAX_DEPTH)
            .map_err(|e| invalid(format!("JWKS is not JSON: {e}")))?;
        Self::from_value(&value)
    }

    /// The key with exactly this kid.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn to_value(&self) -> Value {
        json!({"keys": self.keys.iter().map(|k| to_jwk(&k.key, k.kid.as_deref())).collect::<Vec<_>>()})
    }
}

/// Public key material as a caller gives it: one key (a PEM or a JWK) or a key set (a JWKS).
/// Every entry point that takes a public key reads it here, so a private key is refused the
/// same way everywhere (PROTOCOL §4).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // read once per configuration; boxing buys nothing
pub enum PublicKeys {
    One(Jwk),
    Set(Arc<Jwks>),
}

impl PublicKeys {
    /// From text: a PEM public key, or JSON (duplicate members refused) holding a JWK or a JWKS.
    pub fn from_text(text: &[u8]) -> Result<Self> {
        let text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(text);
        if text.trim_ascii_start().starts_with(b"{") {
            if std::str::from_utf8(text).is_ok_and(mentions_private_key) {
                return Err(private_key_refused());
            }
            let value = strict_json::parse(text, strict_json::MAX_DEPTH)
                .map_err(|e| invalid(format!("the key text is not valid JSON: {e}")))?;
            return Self::from_value(&value);
        }
        Ok(PublicKeys::One(Jwk {
            kid: None,
            key: VerifyingKey::from_pem(text)?,
        }))
    }

    /// From JSON: a JWKS (an object with `keys`, at least one of them usable) or one JWK.
    pub fn from_value(value: &Value) -> Result<Self> {
        if value.get("keys").is_none() {
            return Ok(PublicKeys::One(Jwk::from_value(value)?));
        }
        let jwks = Jwks::from_value(value)?;
        if jwks.keys.is_empty() {
            let reasons: Vec<String> = jwks
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.kid.as_deref().unwrap_or("?"), s.reason))
                .collect();
            return Err(invalid(format!(
                "the JWKS has no usable key{}",
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join("; "))
                }
            )));
        }
        Ok(PublicKeys::Set(Arc::new(jwks)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dci::keys::tests::hex;

    #[test]
    fn rfc8037_a2_public_key_converts() {
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let parsed = Jwk::from_value(&jwk).unwrap();
        let VerifyingKey::Ed25519(k) = &parsed.key else {
            panic!()
        };
        assert_eq!(
            k.as_bytes().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        // RFC 8037 A.4/A.5: the Ed25519 signature of the JWS signing input verifies.
        let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = B64URL
            .decode("hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
            .unwrap();
        assert!(parsed.key.verify(input, &sig));
        assert_eq!(to_jwk(&parsed.key, None)["x"], jwk["x"]);
    }

    #[test]
    fn jwks_skips_unusable_keys_and_selects_by_full_kid() {
        let doc = json!({"keys": [
            {"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"ec"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a|k1|ed25519"},
        ]});
        let jwks = Jwks::from_value(&doc).unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.skipped[0].kid.as_deref(), Some("ec"));
        assert!(jwks.get("a|k1|ed25519").is_some());
        assert!(jwks.get("k1").is_none());
        assert!(Jwks::from_value(&json!({"nokeys": []})).is_err());
        assert!(Jwks::from_slice(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
    }

    fn is_private_refusal(r: Result<PublicKeys>) -> bool {
        matches!(r, Err(Error::InvalidKey(m)) if m.contains("private key"))
    }

    #[test]
    fn public_key_material_holding_a_private_key_is_refused_whatever_else_it_holds() {
        use crate::dci::keys::SigningKey;
        let key = SigningKey::generate(Algorithm::Ed25519, 0).unwrap();
        let public = key.verifying_key().public_pem().unwrap();
        let private = key.private_pem().unwrap().to_string();
        for text in [
            format!("{public}{private}"),
            format!("{private}{public}"),
            format!(
                "{public}{}",
                private.replace("PRIVATE KEY", "EC PRIVATE KEY")
            ),
            format!(
                "{public}{}",
                private.replace("PRIVATE KEY", "OPENSSH PRIVATE KEY")
            ),
            format!("{public}{}", private.to_lowercase()),
            format!("{public}PuTTY-User-Key-File-3: ssh-ed25519\n"),
        ] {
            assert!(
                is_private_refusal(PublicKeys::from_text(text.as_bytes())),
                "{text}"
            );
        }
        let jwk = to_jwk(&key.verifying_key(), Some("s|k|ed25519"));
        for member in PRIVATE_MEMBERS {
            let mut bad = jwk.clone();
            bad[member] = Value::Null;
            assert!(is_private_refusal(PublicKeys::from_value(&bad)), "{member}");
            let set = json!({"keys": [jwk.clone(), bad]});
            assert!(
                is_private_refusal(PublicKeys::from_value(&set)),
                "{member} in a set"
            );
            assert!(Jwks::from_value(&set).is_err());
            let text = set.to_string();
            assert!(is_private_refusal(PublicKeys::from_text(text.as_bytes())));
        }
        for doc in [
            json!({"keys": [jwk.clone(), private.clone()]}),
            json!({"keys": [{"kty": "EC", "d": "AA"}, jwk.clone()]}),
            json!({"keys": [jwk.clone()], "extra": [{"k": "c2VjcmV0"}]}),
        ] {
            assert!(is_private_refusal(PublicKeys::from_value(&doc)), "{doc}");
        }
        // The public parts alone are fine.
        assert!(PublicKeys::from_text(public.as_bytes()).is_ok());
        let set = json!({"keys": [jwk]}).to_string();
        assert!(matches!(
            PublicKeys::from_text(set.as_bytes()),
            Ok(PublicKeys::Set(_))
        ));
    }

    #[test]
    fn public_key_text_is_one_key_read_strictly() {
        use crate::dci::keys::SigningKey;
        let public = |_| {
            SigningKey::generate(Algorithm::Ed25519, 0)
                .unwrap()
                .verifying_key()
                .public_pem()
                .unwrap()
        };
        let (a, b): (String, String) = (public(0), public(1));
        assert!(PublicKeys::from_text(format!("{a}{b}").as_bytes()).is_err());
        assert!(PublicKeys::from_text(format!("junk\n{a}").as_bytes()).is_err());
        assert!(PublicKeys::from_text(format!("{a}junk").as_bytes()).is_err());
        let crlf = format!("\u{feff}\r\n {}", a.replace('\n', "\r\n"));
        assert!(PublicKeys::from_text(crlf.as_bytes()).is_ok());
        let jwk = PublicKeys::from_text(a.as_bytes()).unwrap();
        let PublicKeys::One(jwk) = jwk else { panic!() };
        let text = to_jwk(&jwk.key, None).to_string();
        let twice = text.replacen('{', r#"{"x": "AAAA", "#, 1);
        assert!(
            PublicKeys::from_text(twice.as_bytes()).is_err(),
            "duplicate x"
        );
        assert!(
            PublicKeys::from_text(br#"{"keys": []}"#).is_err(),
            "no usable key"
        );
    }
}
