//! Binding of `doctor`: every first-hour step against a registry.

use pyo3::prelude::*;

use super::client::PyDciClient;
use super::gil::blocking;
use super::json::to_python;
use crate::dci::doctor as dci_doctor;

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
