//! The one error type of the core. Variants are kinds; messages never carry secrets or key material.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// A key (PEM, DER, JWK, seed) could not be read or is not acceptable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A value cannot be represented as canonical JSON (e.g. a non-string object key).
    #[error("cannot serialise as JSON: {0}")]
    Json(String),
    /// A signature could not be produced, or a signed answer failed verification.
    #[error("signature error: {0}")]
    Signature(String),
    /// A configuration value is wrong (bad URL, missing credential, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A bounded store (replay guard) is full of live entries and refuses to forget any.
    #[error("capacity exceeded: {0}")]
    Capacity(String),
}
