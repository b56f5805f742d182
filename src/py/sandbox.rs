//! Binding of the embedded IBR sandbox: argument conversion and GIL release only.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyMapping, PyString, PyTuple};
use serde_json::{Map, Value};

use super::gil::blocking;
use super::json::{to_python, to_value};
use super::keys::{PublicKeyArg, PySigningKey};
use crate::dci::jwk::{Jwk, PublicKeys};
use crate::sandbox::{DatasetSource, ErrorStyle, Faults, Sample, Sandbox, SandboxConfig};

/// A dict whose keys may be ints (HTTP statuses) as JSON with string keys, one level deep for
/// `error_rates`.
fn faults_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    let mapping = obj
        .downcast::<PyMapping>()
        .map_err(|_| PyTypeError::new_err("faults must be a dict"))?;
    let dict = PyDict::new(obj.py());
    dict.update(mapping)?;
    let key_text = |k: &Bound<'_, PyAny>| -> PyResult<String> {
        if k.is_instance_of::<PyString>() || k.is_instance_of::<PyInt>() {
            Ok(k.str()?.to_string())
        } else {
            Err(PyTypeError::new_err("fault keys must be str or int"))
        }
    };
    let mut out = Map::new();
    for (k, v) in dict.iter() {
        let key = key_text(&k)?;
        let value = if key == "error_rates" && v.is_instance_of::<PyDict>() {
            let mut rates = Map::new();
            for (s, r) in v.downcast::<PyDict>()?.iter() {
                rates.insert(key_text(&s)?, to_value(&r)?);
            }
            Value::Object(rates)
        } else {
            to_value(&v)?
        };
        out.insert(key, value);
    }
    Ok(Value::Object(out))
}

fn public_keys(key: &Bound<'_, PyAny>) -> PyResult<Vec<Jwk>> {
    Ok(match key.extract::<PublicKeyArg>()?.0 {
        PublicKeys::One(jwk) => vec![jwk],
        PublicKeys::Set(jwks) => jwks.keys.clone(),
    })
}

/// The embedded IBR sandbox (see `spp_dci_ibr.sandbox.IBRSandbox` for the documented API).
#[pyclass(name = "Sandbox", module = "spp_dci_ibr._native", frozen, subclass)]
pub struct PySandbox {
    config: SandboxConfig,
    running: Mutex<Option<Sandbox>>,
}

impl PySandbox {
    fn state(&self) -> MutexGuard<'_, Option<Sandbox>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_once(&self, py: Python<'_>) -> PyResult<()> {
        if self.state().is_some() {
            return Ok(());
        }
        // The lock is not held while the GIL is released (another thread may want both).
        let config = self.config.clone();
        let started = blocking(py, || Sandbox::start(config))?;
        let mut state = self.state();
        if state.is_none() {
            *state = Some(started);
        } else {
            drop(state);
            blocking(py, move || drop(started));
        }
        Ok(())
    }

    fn with<T>(&self, f: impl FnOnce(&Sandbox) -> T) -> PyResult<T> {
        match self.state().as_ref() {
            Some(sb) => Ok(f(sb)),
            None => Err(PyRuntimeError::new_err(
                "the sandbox is not running; call start() or use it as a context manager",
            )),
        }
    }
}

#[pymethods]
impl PySandbox {
    #[new]
    #[pyo3(signature = (*, synthetic = 100, seed = 0, records = None, records_file = None,
        require_signatures = true, require_auth = true, faults = None, prefix = "",
        sender_id = "ibr.sandbox.local", token_lifetime = 3600, max_page_size = 100,
        bare_enrolled = false, host = "127.0.0.1", port = 0, error_style = "errors",
        max_batch_items = 5000, reject_replays = true,
        allow_remote_callbacks = false, signing_key = None, key_id = "sandbox-key-1",
        client_id = None, client_secret = None, strict = true, one_callback_url = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        synthetic: usize,
        seed: u64,
        records: Option<&Bound<'_, PyAny>>,
        records_file: Option<PathBuf>,
        require_signatures: bool,
        require_auth: bool,
        faults: Option<&Bound<'_, PyAny>>,
        prefix: &str,
        sender_id: &str,
        token_lifetime: u64,
        max_page_size: usize,
        bare_enrolled: bool,
        host: &str,
        port: u16,
        error_style: &str,
        max_batch_items: usize,
        reject_replays: bool,
        allow_remote_callbacks: bool,
        signing_key: Option<&Bound<'_, PySigningKey>>,
        key_id: &str,
        client_id: Option<String>,
        client_secret: Option<String>,
        strict: bool,
        one_callback_url: bool,
    ) -> PyResult<Self> {
        let dataset = match (records, records_file) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "give records or records_file, not both",
                ))
            }
            (Some(list), None) => DatasetSource::Records(
                list.try_iter()?
                    .map(|r| Ok(to_value(&r?)?))
                    .collect::<PyResult<_>>()?,
            ),
            (None, Some(path)) => DatasetSource::File(path),
            (None, None) => DatasetSource::Synthetic {
                count: synthetic,
                seed,
            },
        };
        let error_style = ErrorStyle::parse(error_style).ok_or_else(|| {
            PyValueError::new_err(format!(
                "error_style must be 'errors', 'ack', 'detail' or 'detail_text', not {error_style:?}"
            ))
        })?;
        if max_page_size == 0 {
            return Err(PyValueError::new_err("max_page_size must be at least 1"));
        }
        let faults = match faults {
            Some(f) => Faults::from_value(&faults_value(f)?)?,
            None => Faults::none(),
        };
        Ok(PySandbox {
            config: SandboxConfig {
                host: host.to_owned(),
                port,
                prefix: prefix.to_owned(),
                sender_id: sender_id.to_owned(),
                key_id: key_id.to_owned(),
                signing_key: signing_key.map(|k| k.get().key.clone()),
                client_id,
                client_secret,
                token_lifetime,
                require_auth,
                require_signatures,
                reject_replays,
                strict,
                one_callback_url,
                max_page_size,
                max_batch_items,
                bare_enrolled,
                error_style,
                dataset,
                faults,
                allow_remote_callbacks,
                ..SandboxConfig::default()
            },
            running: Mutex::new(None),
        })
    }

    /// Starts the server (no-op when running) and returns the sandbox. Releases the GIL.
    fn start<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        slf.get().start_once(slf.py())?;
        Ok(slf.clone())
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        Self::start(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.stop(py);
    }

    /// Stops the server and joins its threads (no-op when stopped). Releases the GIL.
    fn stop(&self, py: Python<'_>) {
        let taken = self.state().take();
        if let Some(mut sb) = taken {
            blocking(py, move || sb.stop());
        }
    }

    #[getter]
    fn running(&self) -> bool {
        self.state().is_some()
    }

    #[getter]
    fn url(&self) -> PyResult<String> {
        self.with(Sandbox::url)
    }

    #[getter]
    fn token_url(&self) -> PyResult<String> {
        self.with(Sandbox::token_url)
    }

    #[getter]
    fn jwks_url(&self) -> PyResult<String> {
        self.with(Sandbox::jwks_url)
    }

    #[getter]
    fn port(&self) -> PyResult<u16> {
        self.with(Sandbox::port)
    }

    #[getter]
    fn sender_id(&self) -> String {
        self.config.sender_id.clone()
    }

    #[getter]
    fn client_id(&self) -> PyResult<String> {
        self.with(|sb| sb.client_id().to_owned())
    }

    #[getter]
    fn client_secret(&self) -> PyResult<String> {
        self.with(|sb| sb.client_secret().to_owned())
    }

    fn public_jwks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.with(Sandbox::public_jwks)?)
    }

    fn register_client_key(&self, sender_id: &str, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let keys = public_keys(key)?;
        self.with(|sb| {
            for k in keys {
                sb.register_client_key(sender_id, k);
            }
        })
    }

    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let records = self.with(Sandbox::records)?;
        to_python(py, &Value::Array(records))
    }

    #[pyo3(signature = (status = "active", n = 1))]
    fn sample_identifiers(&self, status: &str, n: usize) -> PyResult<Vec<(String, String)>> {
        let class = Sample::parse(status).ok_or_else(|| {
            PyValueError::new_err(format!(
                "status must be active, suspended, graduated, deceased or unknown, not {status:?}"
            ))
        })?;
        self.with(|sb| sb.sample_identifiers(class, n))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.with(|sb| sb.stats().to_value())?)
    }

    fn reset_stats(&self) -> PyResult<()> {
        self.with(Sandbox::reset_stats)
    }

    fn set_faults(&self, faults: &Bound<'_, PyAny>) -> PyResult<()> {
        let faults = Faults::from_value(&faults_value(faults)?)?;
        self.with(|sb| sb.set_faults(faults))
    }

    fn faults<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let faults = match self.state().as_ref() {
            Some(sb) => sb.faults(),
            None => self.config.faults.clone(),
        };
        to_python(py, &faults.to_value())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let name = slf.get_type().name()?;
        Ok(match slf.get().state().as_ref() {
            Some(sb) => format!(
                "{name}(url={:?}, sender_id={:?}, running=True)",
                sb.url(),
                sb.sender_id()
            ),
            None => format!(
                "{name}(sender_id={:?}, running=False)",
                slf.get().config.sender_id
            ),
        })
    }
}
