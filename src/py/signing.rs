//! Binding of the signing core: canonical JSON, signing, checking and explaining signatures, PEM/JWK
//! conversion, the replay guard. Key material is read in `keys.rs`.

use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::gil::blocking;
use super::json::{to_python, to_value, with_json};
use super::keys::{parse_algorithm, signing_key_arg, text_or_bytes, PublicKeyArg};
use crate::dci::canonical;
use crate::dci::envelope::now_unix;
use crate::dci::jwk;
use crate::dci::keys::{mentions_private_key, private_key_refused, Algorithm, VerifyingKey};
use crate::dci::replay::ReplayGuard;
use crate::dci::signature::{self, Check, Policy};
use crate::dci::{strict_json, Error};

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
fn check_inputs(
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

/// How a signature was checked: the canonical bytes' SHA-256, the signing string, the key tried
/// for its kid, each normalised header form tried, the form that verified or why none did.
#[allow(clippy::too_many_arguments)] // the Python signature
#[pyfunction]
#[pyo3(signature = (signature, header, message, public_key, *, now = None, max_skew = 60, max_lifetime = 3600))]
pub fn explain_signature<'py>(
    py: Python<'py>,
    signature: &str,
    header: &Bound<'py, PyAny>,
    message: &Bound<'py, PyAny>,
    public_key: &Bound<'py, PyAny>,
    now: Option<i64>,
    max_skew: i64,
    max_lifetime: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let (keys, policy) = check_inputs(public_key, now, max_skew, max_lifetime)?;
    let explained = with_json([header, message], |[h, m]| {
        signature::explain(signature, &h, &m, &keys.keys(), policy)
    })?;
    to_python(py, &explained.to_value())
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
