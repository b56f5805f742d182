//! The one helper through which every blocking call releases the GIL, and the bridge from Rust
//! `log` records to Python's `logging`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;

static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();
static LOGGER: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
static LAST_LEVEL: AtomicI64 = AtomicI64::new(-1);

/// Forwards Rust `log` records to Python `logging` (loggers named after the Rust modules,
/// `spp_dci_ibr.dci.client` …). Levels are cached on the Rust side for speed.
pub fn init_logging() {
    if let Ok(handle) = pyo3_log::try_init() {
        let _ = LOG_RESET.set(handle);
    }
}

/// Drops the cached levels when the effective level of the `spp_dci_ibr` logger changed since
/// the last blocking call, so switching DEBUG on (or off) in Python takes effect at once.
fn refresh_log_levels(py: Python<'_>) {
    let level = LOGGER
        .get_or_try_init(py, || {
            py.import("logging")?
                .call_method1("getLogger", ("spp_dci_ibr",))
                .map(Bound::unbind)
        })
        .and_then(|logger| {
            logger
                .bind(py)
                .call_method0("getEffectiveLevel")?
                .extract::<i64>()
        });
    if let Ok(level) = level {
        if LAST_LEVEL.swap(level, Ordering::Relaxed) != level {
            if let Some(handle) = LOG_RESET.get() {
                handle.reset();
            }
        }
    }
}

/// Runs `work` with the GIL released: arguments are already extracted into owned values, the
/// result is converted back by the caller.
pub fn blocking<T, F>(py: Python<'_>, work: F) -> T
where
    F: Ungil + FnOnce() -> T,
    T: Ungil,
{
    refresh_log_levels(py);
    py.allow_threads(work)
}
