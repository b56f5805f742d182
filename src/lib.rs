//! spp-dci-client-ibr: the DCI protocol core for the Integrated Beneficiary Registry.
//!
//! `dci` is pure Rust (no Python); `py` is the thin pyo3 binding, built only with the `python`
//! feature (maturin turns it on).

pub mod dci;

#[cfg(feature = "python")]
mod py;
