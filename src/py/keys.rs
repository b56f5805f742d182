//! Key material as Python gives it, turned into the core's keys in this one place: `SigningKey`,
//! `JWKS` and `RemoteJWKS`, and the argument conversions every other binding module uses
//! (public keys, private keys, what a callback key lookup returns).

use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use sha2::{Digest as _, Sha256};

use super::gil::blocking;
use super::json::{to_python, to_value};
use crate::dci::callback::KeyMaterial;
use crate::dci::jwk::{self, Jwks, PublicKeys};
use crate::dci::keys::{Algorithm, SigningKey};
use crate::dci::keysource::{self, check_jwks_url, RegistryKeys};
use crate::dci::signature::Keys;

pub(crate) fn parse_algorithm(name: &str) -> PyResult<Algorithm> {
    Algorithm::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "algorithm must be 'ed25519' or 'rs256', not {name:?}"
        ))
    })
}

/// Bytes of a `str | bytes` argument.
pub(crate) fn text_or_bytes(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!("{what} must be str or bytes")))
}

/// A private key: Ed25519 or RSA (2048 to 4096 bits).
///
/// Build with `SigningKey.generate()`, `SigningKey.from_pem()` (PKCS#8 or PKCS#1) or
/// `SigningKey.from_seed()` (raw 32-byte Ed25519 seed). Its repr shows the algorithm and a public
/// fingerprint, never key material.
#[pyclass(name = "SigningKey", module = "spp_dci_ibr._native", frozen)]
pub struct PySigningKey {
    pub key: Arc<SigningKey>,
}

impl PySigningKey {
    fn fingerprint(&self) -> String {
        let der = self.key.verifying_key().spki_der().unwrap_or_default();
        let hash = Sha256::digest(&der);
        hash[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[pymethods]
impl PySigningKey {
    /// A new random key: `"ed25519"` (default) or `"rs256"` with `bits` (2048 to 4096).
    #[staticmethod]
    #[pyo3(signature = (algorithm = "ed25519", bits = 2048))]
    fn generate(py: Python<'_>, algorithm: &str, bits: usize) -> PyResult<Self> {
        let alg = parse_algorithm(algorithm)?;
        let key = blocking(py, || SigningKey::generate(alg, bits))?;
        Ok(PySigningKey { key: Arc::new(key) })
    }

    /// Loads a PEM private key: PKCS#8 `PRIVATE KEY` (Ed25519 or RSA) or PKCS#1 `RSA PRIVATE KEY`.
    #[staticmethod]
    fn from_pem(pem: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes = zeroize::Zeroizing::new(text_or_bytes(pem, "pem")?);
        Ok(PySigningKey {
            key: Arc::new(SigningKey::from_pem(&bytes)?),
        })
    }

    /// An Ed25519 key from its raw 32-byte seed.
    #[staticmethod]
    fn from_seed(seed: &[u8]) -> PyResult<Self> {
        Ok(PySigningKey {
            key: Arc::new(SigningKey::from_seed(seed)?),
        })
    }

    /// `"ed25519"` or `"rs256"`.
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.key.algorithm().as_str()
    }

    /// SubjectPublicKeyInfo PEM of the public key.
    fn public_pem(&self) -> PyResult<String> {
        Ok(self.key.verifying_key().public_pem()?)
    }

    /// PKCS#8 PEM of the private key. Store it as a secret.
    fn private_pem(&self) -> PyResult<String> {
        Ok(self.key.private_pem()?.to_string())
    }

    /// The kid this key signs with: `<sender_id>|<key_id>|<alg>`.
    fn kid(&self, sender_id: &str, key_id: &str) -> String {
        jwk::make_kid(sender_id, key_id, self.key.algorithm())
    }

    /// The public JWK to publish, with `kid` `<sender_id>|<key_id>|<alg>`, `use` and `alg`.
    fn public_jwk<'py>(
        &self,
        py: Python<'py>,
        sender_id: &str,
        key_id: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kid = self.kid(sender_id, key_id);
        to_python(py, &jwk::to_jwk(&self.key.verifying_key(), Some(&kid)))
    }

    fn __repr__(&self) -> String {
        format!(
            "SigningKey(algorithm='{}', public_sha256='{}')",
            self.key.algorithm().as_str(),
            self.fingerprint()
        )
    }
}

pub(crate) fn signing_key_arg(obj: &Bound<'_, PyAny>) -> PyResult<Arc<SigningKey>> {
    if let Ok(k) = obj.downcast::<PySigningKey>() {
        return Ok(k.get().key.clone());
    }
    let bytes = zeroize::Zeroizing::new(text_or_bytes(obj, "private_key")?);
    let key = if obj.is_instance_of::<PyBytes>() && bytes.len() == 32 {
        SigningKey::from_seed(&bytes)?
    } else {
        SigningKey::from_pem(&bytes)?
    };
    Ok(Arc::new(key))
}

/// A parsed JWKS (`{"keys": [...]}`); keys are selected by their full kid.
#[pyclass(name = "JWKS", module = "spp_dci_ibr._native", frozen)]
pub struct PyJwks {
    pub jwks: Arc<Jwks>,
}

#[pymethods]
impl PyJwks {
    /// Parses a JWKS from JSON text, bytes or a dict. Keys that cannot verify DCI signatures are
    /// skipped (see `skipped`); a document that is not a JWKS, has duplicate members or holds a
    /// private key anywhere raises `KeyFormatError`.
    #[staticmethod]
    fn from_json(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let jwks = if obj.is_instance_of::<PyDict>() {
            Jwks::from_value(&to_value(obj)?)?
        } else {
            Jwks::from_slice(&text_or_bytes(obj, "jwks")?)?
        };
        Ok(PyJwks {
            jwks: Arc::new(jwks),
        })
    }

    /// Fetches a JWKS: GET `url` (https unless `allow_http`; ≤ 1 MiB; 10 s timeout; at most 3
    /// redirects, each to the same scheme, host and port). Releases the GIL.
    #[staticmethod]
    #[pyo3(signature = (url, *, allow_http = false, verify_tls = true))]
    fn fetch(py: Python<'_>, url: String, allow_http: bool, verify_tls: bool) -> PyResult<Self> {
        let jwks = blocking(py, move || {
            let http = keysource::jwks_http(verify_tls, None)?;
            keysource::fetch_jwks(&http, &url, allow_http)
        })?;
        Ok(PyJwks {
            jwks: Arc::new(jwks),
        })
    }

    /// The kids of the usable keys, in document order.
    #[getter]
    fn kids(&self) -> Vec<Option<String>> {
        self.jwks.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// `(kid, reason)` for every key that was skipped.
    #[getter]
    fn skipped(&self) -> Vec<(Option<String>, String)> {
        self.jwks
            .skipped
            .iter()
            .map(|s| (s.kid.clone(), s.reason.clone()))
            .collect()
    }

    /// The public JWK with exactly this kid, or None.
    fn get<'py>(&self, py: Python<'py>, kid: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.jwks
            .get(kid)
            .map(|k| to_python(py, &jwk::to_jwk(&k.key, k.kid.as_deref())))
            .transpose()
    }

    /// The usable keys as a JWKS dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.jwks.to_value())
    }

    fn __len__(&self) -> usize {
        self.jwks.keys.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "JWKS(kids={:?})",
            self.kids().into_iter().flatten().collect::<Vec<_>>()
        )
    }
}

/// Public key material as Python gives it: PEM or JSON (JWK, JWKS) text as `str` or `bytes`, a
/// JWK or JWKS `dict`, or a `JWKS`. Read by the core's one reader, which refuses private keys.
pub struct PublicKeyArg(pub PublicKeys);

impl<'py> FromPyObject<'py> for PublicKeyArg {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(j) = obj.downcast::<PyJwks>() {
            return Ok(PublicKeyArg(PublicKeys::Set(j.get().jwks.clone())));
        }
        if obj.is_instance_of::<PyDict>() {
            return Ok(PublicKeyArg(PublicKeys::from_value(&to_value(obj)?)?));
        }
        if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
            let text = zeroize::Zeroizing::new(text_or_bytes(obj, "public key")?);
            return Ok(PublicKeyArg(PublicKeys::from_text(&text)?));
        }
        Err(PyTypeError::new_err(
            "public_key must be a PEM or JWK/JWKS JSON text (str or bytes), a JWK or JWKS dict, \
             or a JWKS",
        ))
    }
}

impl PublicKeyArg {
    pub(crate) fn keys(&self) -> Keys<'_> {
        match &self.0 {
            PublicKeys::One(k) => Keys::One(&k.key),
            PublicKeys::Set(s) => Keys::Set(s),
        }
    }
}

/// The keys published at a JWKS URL, for a callback key lookup to return: fetched through the
/// process-wide cache (kept an hour; refetched on an unknown kid at most once a minute per URL,
/// failed fetches included; one fetch at a time), and only when no other key of the sender has
/// the signature's kid. https only unless `allow_http`; nothing is fetched when it is created.
#[pyclass(name = "RemoteJWKS", module = "spp_dci_ibr._native", frozen)]
pub struct PyRemoteJwks {
    url: String,
    keys: Arc<RegistryKeys>,
}

#[pymethods]
impl PyRemoteJwks {
    #[new]
    #[pyo3(signature = (url, *, allow_http = false, verify_tls = true))]
    fn new(url: String, allow_http: bool, verify_tls: bool) -> PyResult<Self> {
        check_jwks_url(&url, allow_http)?;
        let keys = RegistryKeys::Url {
            url: url.clone(),
            allow_http,
            http: keysource::jwks_http(verify_tls, None)?,
        };
        Ok(PyRemoteJwks {
            url,
            keys: Arc::new(keys),
        })
    }

    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    fn __repr__(&self) -> String {
        format!("RemoteJWKS({:?})", self.url)
    }
}

/// What a callback key lookup returned: None (unknown sender), one key, or a sequence of keys
/// (PEM `str`/`bytes`, JWK or JWKS `dict`, `JWKS`, `RemoteJWKS`), kept unparsed for the core,
/// which reads each only if the signature's kid needs it.
pub struct KeyLookupArg(pub Option<Vec<KeyMaterial>>);

impl<'py> FromPyObject<'py> for KeyLookupArg {
    fn extract_bound(found: &Bound<'py, PyAny>) -> PyResult<Self> {
        if found.is_none() {
            return Ok(KeyLookupArg(None));
        }
        if let Some(one) = key_material(found)? {
            return Ok(KeyLookupArg(Some(vec![one])));
        }
        let mut keys = Vec::new();
        for item in found.try_iter()? {
            let item = item?;
            keys.push(key_material(&item)?.ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "a key lookup returns PEM (str or bytes), JWK dicts, JWKS or RemoteJWKS \
                     items, not {}",
                    item.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?);
        }
        Ok(KeyLookupArg(Some(keys)))
    }
}

/// One key of a lookup, or None when `item` is not a key (a sequence of keys, or else).
fn key_material(item: &Bound<'_, PyAny>) -> PyResult<Option<KeyMaterial>> {
    Ok(Some(if let Ok(jwks) = item.downcast::<PyJwks>() {
        KeyMaterial::Set(jwks.get().jwks.clone())
    } else if let Ok(remote) = item.downcast::<PyRemoteJwks>() {
        KeyMaterial::Url(remote.get().keys.clone())
    } else if item.is_instance_of::<PyDict>() {
        KeyMaterial::Json(to_value(item)?)
    } else if item.is_instance_of::<PyString>() || item.is_instance_of::<PyBytes>() {
        KeyMaterial::Pem(text_or_bytes(item, "key")?)
    } else {
        return Ok(None);
    }))
}
