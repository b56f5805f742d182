//! The Python binding: type conversion, error mapping, releasing the GIL. No protocol logic.

mod callback;
mod client;
mod doctor;
mod error;
mod gil;
mod ibr;
mod json;
mod keys;
mod sandbox;
mod signing;

/// Native core of `spp_dci_ibr` (import the package, not this module).
#[pyo3::pymodule]
mod _native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::callback::{PyCallbackRefusal, PyCallbackVerifier, PyVerifiedCallback};
    #[pymodule_export]
    use super::client::PyDciClient;
    #[pymodule_export]
    use super::doctor::doctor;
    #[pymodule_export]
    use super::ibr::{
        PyBeneficiary, PyCheckIterator, PyDuplicationResult, PyIbrService, PyOutcome,
    };
    #[pymodule_export]
    use super::keys::{PyJwks, PyRemoteJwks, PySigningKey};
    #[pymodule_export]
    use super::sandbox::PySandbox;
    #[pymodule_export]
    use super::signing::{
        canonical_json, check_signature, explain_signature, jwk_to_pem, pem_to_jwk, sign_envelope,
        verify_signature, PyReplayGuard, PySignatureCheck,
    };

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        super::gil::init_logging();
        super::error::resolve_all(m.py());
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
