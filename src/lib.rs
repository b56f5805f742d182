//! spp-dci-client-ibr: the DCI protocol core for the Integrated Beneficiary Registry.
//!
//! `dci` is the protocol core, pure Rust (no Python); `sandbox` is the embedded IBR registry
//! (a loopback server for tests, demos and benchmarks) built on the core; `py` is the thin pyo3
//! binding, built only with the `python` feature (maturin turns it on).

pub mod dci;
pub mod sandbox;

#[cfg(feature = "python")]
mod py;
