//! JWK and JWKS (PROTOCOL §4): reading published keys and publishing ours.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::error::{Error, Result};
use super::keys::{Algorithm, RsaPublicKey, VerifyingKey};

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

const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

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
        let Value::Object(jwk) = value else {
            return Err(invalid("a JWK must be a JSON object"));
        };
        if let Some(name) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(invalid(format!(
                "JWK carries the private member '{name}'; publish and configure public keys only"
            )));
        }
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
    /// malformed members) are skipped and listed in `skipped`; the rest stay usable.
    pub fn from_value(value: &Value) -> Result<Self> {
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
        let value: Value =
            serde_json::from_slice(body).map_err(|e| invalid(format!("JWKS is not JSON: {e}")))?;
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
}
