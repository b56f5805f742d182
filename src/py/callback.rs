//! Binding of the callback receiver core (`dci::callback`): one call per received callback, with
//! the GIL released; the Python key lookup is called back (with the GIL) at most once.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::gil::blocking;
use super::json::to_python;
use super::keys::KeyLookupArg;
use crate::dci::callback::{
    self, Action, Limits, Refusal, Route, Verdict, Verified, ANY_ACTION_PATH,
};
use crate::dci::canonical::HeaderForm;
use crate::dci::envelope::now_unix;
use crate::dci::Error;

fn form_name(form: HeaderForm) -> &'static str {
    match form {
        HeaderForm::AsReceived => "as_received",
        HeaderForm::DefaultsKeepNulls => "defaults_keep_nulls",
        HeaderForm::DefaultsDropNulls => "defaults_drop_nulls",
    }
}

/// A callback that passed every check of `CallbackVerifier.verify` (not yet the replay check).
/// `header` is the header as verified: as received, or in the normalised form that verified
/// (`header_form`), never a raw field the signature did not cover.
#[pyclass(name = "VerifiedCallback", module = "spp_dci_ibr._native", frozen)]
pub struct PyVerifiedCallback {
    #[pyo3(get)]
    action: &'static str,
    #[pyo3(get)]
    sender_id: String,
    #[pyo3(get)]
    message_id: String,
    #[pyo3(get)]
    kid: String,
    /// The signature's expiry (Unix seconds): remember the message_id until then.
    #[pyo3(get)]
    expires: i64,
    #[pyo3(get)]
    header_form: &'static str,
    #[pyo3(get)]
    header: Py<PyAny>,
    #[pyo3(get)]
    message: Py<PyAny>,
    #[pyo3(get)]
    transaction_id: Option<String>,
    #[pyo3(get)]
    correlation_id: Option<String>,
    #[pyo3(get)]
    reference_ids: Py<PyTuple>,
}

impl PyVerifiedCallback {
    fn new(py: Python<'_>, v: Verified) -> PyResult<Self> {
        Ok(PyVerifiedCallback {
            action: v.action.as_str(),
            header_form: form_name(v.form),
            header: to_python(py, &v.header)?.unbind(),
            message: to_python(py, &v.message)?.unbind(),
            reference_ids: PyTuple::new(py, &v.reference_ids)?.unbind(),
            sender_id: v.sender_id,
            message_id: v.message_id,
            kid: v.kid,
            expires: v.expires,
            transaction_id: v.transaction_id,
            correlation_id: v.correlation_id,
        })
    }
}

#[pymethods]
impl PyVerifiedCallback {
    fn __repr__(&self) -> String {
        format!(
            "VerifiedCallback(action={:?}, sender_id={:?}, message_id={:?})",
            self.action, self.sender_id, self.message_id
        )
    }
}

/// A refused callback: the HTTP `status`, the spec's `err.*` `code` and a `message` for the
/// sender (no key material, no body). `outcome` is the signature's, for a 401
/// `err.signature.invalid` ("malformed", "invalid", "expired", …); `sender_id` and `message_id`
/// name the callback when its envelope could be read.
#[pyclass(name = "CallbackRefusal", module = "spp_dci_ibr._native", frozen)]
pub struct PyCallbackRefusal {
    refusal: Refusal,
}

#[pymethods]
impl PyCallbackRefusal {
    #[getter]
    fn status(&self) -> u16 {
        self.refusal.status()
    }
    #[getter]
    fn code(&self) -> &'static str {
        self.refusal.code()
    }
    #[getter]
    fn message(&self) -> &str {
        &self.refusal.message
    }
    #[getter]
    fn outcome(&self) -> Option<&'static str> {
        self.refusal.outcome.map(|o| o.as_str())
    }
    /// `header.sender_id` when the envelope could be read, cut to 128 characters (for logs).
    #[getter]
    fn sender_id(&self) -> Option<&str> {
        self.refusal.sender_id.as_deref()
    }
    /// `header.message_id` when the envelope could be read, cut to 128 characters (for logs).
    #[getter]
    fn message_id(&self) -> Option<&str> {
        self.refusal.message_id.as_deref()
    }
    fn __repr__(&self) -> String {
        format!(
            "CallbackRefusal({} {}: {:?})",
            self.status(),
            self.code(),
            self.refusal.message
        )
    }
}

/// Checks received callbacks (PROTOCOL §3, §8) with fixed limits: the body size, strict JSON,
/// the envelope, the route's action, the signature parameters, kid and sender, the time window,
/// the candidate keys and the signature. Raises `ConfigError` (a `ValueError`) for a limit out
/// of range (`max_depth` from 1 to 128).
#[pyclass(name = "CallbackVerifier", module = "spp_dci_ibr._native", frozen)]
pub struct PyCallbackVerifier {
    limits: Limits,
}

#[pymethods]
impl PyCallbackVerifier {
    #[new]
    #[pyo3(signature = (*, max_body_bytes = 1_048_576, max_depth = 64, max_skew = 60, max_lifetime = 3600))]
    fn new(
        max_body_bytes: usize,
        max_depth: usize,
        max_skew: i64,
        max_lifetime: i64,
    ) -> PyResult<Self> {
        let limits = Limits {
            max_body_bytes,
            max_depth,
            max_skew,
            max_lifetime,
        }
        .validate()?;
        Ok(PyCallbackVerifier { limits })
    }

    /// `(action, path)` of the five callback routes, the path below the receiver's prefix.
    #[staticmethod]
    fn routes() -> Vec<(&'static str, &'static str)> {
        Action::ALL.iter().map(|a| (a.as_str(), a.path())).collect()
    }

    /// The path, below the receiver's prefix, of the route that takes every callback action.
    #[classattr]
    const ANY_ACTION_PATH: &'static str = ANY_ACTION_PATH;

    #[getter]
    fn max_body_bytes(&self) -> usize {
        self.limits.max_body_bytes
    }

    /// The refusal of a body larger than `max_body_bytes` (for a reader that stops early).
    fn too_large(&self) -> PyCallbackRefusal {
        PyCallbackRefusal {
            refusal: Refusal::too_large(self.limits.max_body_bytes),
        }
    }

    /// Checks one callback body. `action` is the route's (None: any of the five, dispatched on
    /// `header.action`); `key_lookup(sender_id, kid)` returns the sender's keys (PEM, JWK dict,
    /// JWKS, RemoteJWKS, or a sequence of them) or None for an unknown sender, and is called at
    /// most once, only for a body that passed every check that needs no key. Returns a
    /// `VerifiedCallback` or a `CallbackRefusal`. Raises what the key lookup raised, and
    /// `KeyFormatError` when none of the sender's candidate keys can be read. Releases the GIL.
    #[pyo3(signature = (body, content_type, key_lookup, *, action = None, now = None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        body: &[u8],
        content_type: Option<&str>,
        key_lookup: Py<PyAny>,
        action: Option<&str>,
        now: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let route = match action {
            None => Route::Any,
            Some(name) => Route::Only(
                Action::parse(name)
                    .ok_or_else(|| Error::Config(format!("'{name}' is not a callback action")))?,
            ),
        };
        let limits = self.limits;
        let now = now.unwrap_or_else(now_unix);
        let mut lookup_failure: Option<PyErr> = None;
        let verdict = blocking(py, || {
            let lookup = |sender_id: &str, kid: Option<&str>| {
                Python::with_gil(|py| {
                    let found = key_lookup.bind(py).call1((sender_id, kid));
                    found
                        .and_then(|f| Ok(f.extract::<KeyLookupArg>()?.0))
                        .map_err(|e| {
                            lookup_failure = Some(e);
                            Error::Config("the key lookup failed".into())
                        })
                })
            };
            callback::verify(body, content_type, route, &limits, now, lookup)
        });
        if let Some(err) = lookup_failure {
            return Err(err);
        }
        match verdict? {
            Verdict::Accepted(v) => {
                Ok(Bound::new(py, PyVerifiedCallback::new(py, *v)?)?.into_any())
            }
            Verdict::Refused(refusal) => {
                Ok(Bound::new(py, PyCallbackRefusal { refusal })?.into_any())
            }
        }
    }

    fn __repr__(&self) -> String {
        let l = &self.limits;
        format!(
            "CallbackVerifier(max_body_bytes={}, max_depth={}, max_skew={}, max_lifetime={})",
            l.max_body_bytes, l.max_depth, l.max_skew, l.max_lifetime
        )
    }
}
