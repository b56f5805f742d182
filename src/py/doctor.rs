//! Binding of `doctor` and of the signature explanation (`verify --explain`).

use pyo3::prelude::*;

use super::client::PyDciClient;
use super::gil::blocking;
use super::json::{to_python, with_json};
use super::signing::check_inputs;
use crate::dci::doctor as dci_doctor;
use crate::dci::signature;

/// Runs every first-hour step against the registry `client` is configured for; the report as a
/// dict (`ok`, `exit_code`, `summary`, `steps`: id, title, status, found, fix).
#[pyfunction]
#[pyo3(signature = (client, *, our_jwks_url = None, id_type = None, id_value = None))]
pub fn doctor<'py>(
    py: Python<'py>,
    client: &PyDciClient,
    our_jwks_url: Option<String>,
    id_type: Option<String>,
    id_value: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let inner = client.inner.clone();
    let opts = dci_doctor::Options {
        our_jwks_url,
        id_type,
        id_value,
    };
    let report = blocking(py, move || dci_doctor::run(&inner, &opts));
    to_python(py, &report.to_value())
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
