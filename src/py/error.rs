//! The one mapping from the core error to the Python exception tree (`spp_dci_ibr.exceptions`).

use pyo3::prelude::*;

use crate::dci::Error;

/// The classes of `spp_dci_ibr.exceptions` (Python classes: some also derive from a builtin),
/// declared once. [`resolve_all`] runs when the native module loads, so a name that does not
/// exist fails the import instead of replacing an error when one is raised.
pub mod exc {
    pyo3::import_exception!(spp_dci_ibr.exceptions, AuthError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, CanonicalJSONError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, CapacityError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, ConfigError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, DCITimeoutError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, HTTPStatusError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, KeyFormatError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, ProtocolError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, RegistryError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, SignatureError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, TransportError);
    pyo3::import_exception!(spp_dci_ibr.exceptions, UndecidedError);
}

/// Resolve every class of [`exc`] now (at import of the native module).
pub fn resolve_all(py: Python<'_>) {
    macro_rules! resolve {
        ($($name:ident),*) => { $( let _ = py.get_type::<exc::$name>(); )* };
    }
    resolve!(
        AuthError,
        CanonicalJSONError,
        CapacityError,
        ConfigError,
        DCITimeoutError,
        HTTPStatusError,
        KeyFormatError,
        ProtocolError,
        RegistryError,
        SignatureError,
        TransportError,
        UndecidedError
    );
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::InvalidKey(_) => exc::KeyFormatError::new_err((message,)),
            Error::Json(_) => exc::CanonicalJSONError::new_err((message,)),
            Error::Signature(_) => exc::SignatureError::new_err((message,)),
            Error::Config(_) => exc::ConfigError::new_err((message,)),
            Error::Capacity(_) => exc::CapacityError::new_err((message,)),
            Error::Transport(_) => exc::TransportError::new_err((message,)),
            Error::Timeout(_) => exc::DCITimeoutError::new_err((message,)),
            Error::Auth { status, code, .. } => exc::AuthError::new_err((message, status, code)),
            Error::HttpStatus { status, code, .. } => {
                exc::HTTPStatusError::new_err((message, status, code))
            }
            Error::Registry { code, .. } => exc::RegistryError::new_err((message, code)),
            Error::Protocol(_) => exc::ProtocolError::new_err((message,)),
            Error::Undecided(_) => exc::UndecidedError::new_err((message,)),
        }
    }
}
