//! The one mapping from the core error to the Python exception tree (`spp_dci_ibr.exceptions`).

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyModule;

use crate::dci::Error;

static EXCEPTIONS: GILOnceCell<Py<PyModule>> = GILOnceCell::new();

/// An instance of `spp_dci_ibr.exceptions.<name>` built from `args`.
pub fn exception<'py, A>(py: Python<'py>, name: &str, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let build = || -> PyResult<PyErr> {
        let module = EXCEPTIONS.get_or_try_init(py, || {
            py.import("spp_dci_ibr.exceptions").map(Bound::unbind)
        })?;
        let class = module.bind(py).getattr(name)?;
        Ok(PyErr::from_value(class.call1(args)?))
    };
    build().unwrap_or_else(|e| e)
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        Python::with_gil(|py| match err {
            Error::InvalidKey(_) => exception(py, "KeyFormatError", (message,)),
            Error::Json(_) => exception(py, "CanonicalJSONError", (message,)),
            Error::Signature(_) => exception(py, "SignatureError", (message,)),
            Error::Config(_) => exception(py, "ConfigError", (message,)),
            Error::Capacity(_) => exception(py, "CapacityError", (message,)),
            Error::Transport(_) => exception(py, "TransportError", (message,)),
            Error::Timeout(_) => exception(py, "DCITimeoutError", (message,)),
            Error::Auth { status, code, .. } => exception(py, "AuthError", (message, status, code)),
            Error::HttpStatus { status, code, .. } => {
                exception(py, "HTTPStatusError", (message, status, code))
            }
            Error::Registry { code, .. } => exception(py, "RegistryError", (message, code)),
            Error::Protocol(_) => exception(py, "ProtocolError", (message,)),
            Error::Undecided(_) => exception(py, "UndecidedError", (message,)),
        })
    }
}
