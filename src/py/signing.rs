//! Binding of the signing core: canonical JSON, signatures, keys, JWKS, replay guard.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use sha2::{Digest as _, Sha256};

use super::gil::blocking;
use super::json::{to_python, to_value, with_json};
use crate::dci::canonical;
use crate::dci::envelope::now_unix;
use crate::dci::jwk::{self, Jwks, PublicKeys};
use crate::dci::keys::{
    mentions_private_key, private_key_refused, Algorithm, SigningKey, VerifyingKey,
};
use crate::dci::replay::ReplayGuard;
use crate::dci::signature::{self, Check, Keys, Policy};
use crate::dci::{strict_json, Error};

fn parse_algorithm(name: &str) -> PyResult<Algorithm> {
    Algorithm::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "algorithm must be 'ed25519' or 'rs256', not {name:?}"
        ))
    })
}

/// Bytes of a `str | bytes` argument.
fn text_or_bytes(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
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

fn signing_key_arg(obj: &Bound<'_, PyAny>) -> PyResult<Arc<SigningKey>> {
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
        super::client::fetch_jwks(py, url, allow_http, verify_tls)
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

/// The result of `check_signature`: `outcome` is one of "valid", "invalid", "expired",
/// "not_yet_valid", "lifetime_too_long", "malformed", "unknown_key"; true only when valid.
#[pyclass(name = "SignatureCheck", module = "spp_dci_ibr._native", frozen)]
pub struct PySignatureCheck {
    check: Check,
}

#[pymethods]
impl PySignatureCheck {
    #[getter]
    fn outcome(&self) -> &'static str {
        self.check.outcome.as_str()
    }
    #[getter]
    fn kid(&self) -> Option<String> {
        self.check.kid.clone()
    }
    #[getter]
    fn algorithm(&self) -> Option<String> {
        self.check.algorithm.clone()
    }
    #[getter]
    fn created(&self) -> Option<i64> {
        self.check.created
    }
    #[getter]
    fn expires(&self) -> Option<i64> {
        self.check.expires
    }
    /// Why the signature field is malformed, when it is.
    #[getter]
    fn detail(&self) -> Option<String> {
        self.check.detail.clone()
    }
    fn __bool__(&self) -> bool {
        self.check.is_valid()
    }
    fn __repr__(&self) -> String {
        match &self.check.kid {
            Some(kid) => format!("SignatureCheck(outcome='{}', kid={kid:?})", self.outcome()),
            None => format!("SignatureCheck(outcome='{}', kid=None)", self.outcome()),
        }
    }
}

/// Canonical JSON: exactly `json.dumps(value, sort_keys=True, separators=(",", ":"))`.
#[pyfunction]
pub fn canonical_json<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    thread_local! {
        // Reused output buffer: the text is copied into the Python str anyway.
        static BUF: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(4096));
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        with_json([value], |[v]| {
            buf.clear();
            canonical::write(&v, &mut buf)
        })?;
        let text = PyString::new(value.py(), &buf);
        if buf.capacity() > 1 << 20 {
            *buf = String::with_capacity(4096); // don't keep a huge buffer alive
        }
        Ok(text)
    })
}

/// Signs `{"header": header, "message": message}` and returns the `signature` field value.
#[pyfunction]
#[pyo3(signature = (header, message, private_key, *, sender_id, key_id, algorithm = None, created = None, lifetime = 300))]
#[allow(clippy::too_many_arguments)]
pub fn sign_envelope(
    py: Python<'_>,
    header: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    private_key: &Bound<'_, PyAny>,
    sender_id: &str,
    key_id: &str,
    algorithm: Option<&str>,
    created: Option<i64>,
    lifetime: i64,
) -> PyResult<String> {
    let key = signing_key_arg(private_key)?;
    if let Some(name) = algorithm {
        let wanted = parse_algorithm(name)?;
        if wanted != key.algorithm() {
            return Err(Error::InvalidKey(format!(
                "algorithm '{}' does not match the {} key",
                wanted.as_str(),
                key.algorithm().as_str()
            ))
            .into());
        }
    }
    if lifetime <= 0 {
        return Err(PyValueError::new_err(
            "lifetime must be a positive number of seconds",
        ));
    }
    let payload = with_json([header, message], |[h, m]| {
        canonical::signing_payload(&h, &m, canonical::HeaderForm::AsReceived)
    })?;
    let created = created.unwrap_or_else(now_unix);
    let expires = created.checked_add(lifetime).unwrap_or(i64::MAX);
    if !(0..=signature::MAX_TIMESTAMP).contains(&created) || expires > signature::MAX_TIMESTAMP {
        return Err(PyValueError::new_err(format!(
            "created and created + lifetime must be Unix seconds between 0 and {}",
            signature::MAX_TIMESTAMP
        )));
    }
    let sign = || signature::sign_payload(&payload, &key, sender_id, key_id, created, expires);
    // An RSA signature takes about half a millisecond: let other threads run meanwhile. An
    // Ed25519 one takes microseconds, less than releasing and taking back the GIL.
    Ok(match key.algorithm() {
        Algorithm::Rs256 => blocking(py, sign),
        Algorithm::Ed25519 => sign(),
    }?)
}

/// The keys and time policy of a signature check, from the Python arguments.
pub(crate) fn check_inputs(
    public_key: &Bound<'_, PyAny>,
    now: Option<i64>,
    max_skew: i64,
    max_lifetime: i64,
) -> PyResult<(PublicKeyArg, Policy)> {
    let policy = Policy {
        now: now.unwrap_or_else(now_unix),
        max_skew,
        max_lifetime,
    };
    Ok((public_key.extract()?, policy))
}

fn run_check(
    signature_field: &str,
    header: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    public_key: &Bound<'_, PyAny>,
    now: Option<i64>,
    max_skew: i64,
    max_lifetime: i64,
) -> PyResult<Check> {
    let (keys, policy) = check_inputs(public_key, now, max_skew, max_lifetime)?;
    Ok(with_json([header, message], |[h, m]| {
        signature::check(signature_field, &h, &m, &keys.keys(), policy)
    })?)
}

/// Checks a `signature` field against the header and message; see `SignatureCheck`.
#[pyfunction]
#[pyo3(signature = (signature, header, message, public_key, *, now = None, max_skew = 60, max_lifetime = 3600))]
pub fn check_signature(
    signature: &str,
    header: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    public_key: &Bound<'_, PyAny>,
    now: Option<i64>,
    max_skew: i64,
    max_lifetime: i64,
) -> PyResult<PySignatureCheck> {
    let check = run_check(
        signature,
        header,
        message,
        public_key,
        now,
        max_skew,
        max_lifetime,
    )?;
    Ok(PySignatureCheck { check })
}

/// True when the signature is valid; signature problems give False, an unreadable key raises.
#[pyfunction]
#[pyo3(signature = (signature, header, message, public_key, *, now = None, max_skew = 60, max_lifetime = 3600))]
pub fn verify_signature(
    signature: &str,
    header: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
    public_key: &Bound<'_, PyAny>,
    now: Option<i64>,
    max_skew: i64,
    max_lifetime: i64,
) -> PyResult<bool> {
    run_check(
        signature,
        header,
        message,
        public_key,
        now,
        max_skew,
        max_lifetime,
    )
    .map(|c| c.is_valid())
}

/// A public JWK (dict or JSON text) as SubjectPublicKeyInfo PEM.
#[pyfunction]
pub fn jwk_to_pem(jwk: &Bound<'_, PyAny>) -> PyResult<String> {
    let value = if let Ok(s) = jwk.downcast::<PyString>() {
        let text = s.to_str()?;
        if mentions_private_key(text) {
            return Err(private_key_refused().into());
        }
        strict_json::parse(text.as_bytes(), strict_json::MAX_DEPTH)
            .map_err(|e| Error::InvalidKey(format!("JWK text is not valid JSON: {e}")))?
    } else if jwk.is_instance_of::<PyDict>() {
        to_value(jwk)?
    } else {
        return Err(PyTypeError::new_err("jwk must be a dict or JSON text"));
    };
    Ok(jwk::jwk_to_pem(&value)?)
}

/// A public key PEM as the JWK to publish (`use` sig, JOSE `alg`, and `kid` when given).
#[pyfunction]
#[pyo3(signature = (pem, kid = None))]
pub fn pem_to_jwk<'py>(
    py: Python<'py>,
    pem: &Bound<'py, PyAny>,
    kid: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let key = VerifyingKey::from_pem(&zeroize::Zeroizing::new(text_or_bytes(pem, "pem")?))?;
    to_python(py, &jwk::to_jwk(&key, kid))
}

/// Remembers `(sender_id, message_id)` until the signature's expiry and refuses repeats, in
/// bounded memory (`max_entries`). Thread-safe.
#[pyclass(name = "ReplayGuard", module = "spp_dci_ibr._native", frozen)]
pub struct PyReplayGuard {
    inner: Mutex<ReplayGuard>,
}

#[pymethods]
impl PyReplayGuard {
    #[new]
    #[pyo3(signature = (max_entries = 100_000))]
    fn new(max_entries: usize) -> Self {
        PyReplayGuard {
            inner: Mutex::new(ReplayGuard::new(max_entries)),
        }
    }

    /// True the first time (the message is remembered until `expires`), False for a replay.
    /// Raises `CapacityError` when full of unexpired entries.
    #[pyo3(signature = (sender_id, message_id, expires, now = None))]
    fn check(
        &self,
        sender_id: &str,
        message_id: &str,
        expires: i64,
        now: Option<i64>,
    ) -> PyResult<bool> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(guard.check(sender_id, message_id, expires, now.unwrap_or_else(now_unix))?)
    }

    fn __len__(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
