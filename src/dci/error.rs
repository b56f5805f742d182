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
    /// No HTTP answer: connection refused or reset, TLS failure, DNS.
    #[error("transport error: {0}")]
    Transport(String),
    /// Connect or read timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Authentication failed (token endpoint refused, or 401/403 after a renewed token).
    #[error("authentication failed: {message}")]
    Auth {
        status: Option<u16>,
        code: Option<String>,
        message: String,
    },
    /// An HTTP error status with the error code the body carried, if any.
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    HttpStatus {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The registry refused in-protocol: ACK `NACK`/`ERR`, or a `rjct` status.
    #[error("registry refused the request{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Registry {
        code: Option<String>,
        message: String,
    },
    /// The answer is not a DCI message this client can read.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// A short machine-readable kind, used as the failure reason prefix in results.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidKey(_) => "invalid_key",
            Error::Json(_) => "json",
            Error::Signature(_) => "signature",
            Error::Config(_) => "config",
            Error::Capacity(_) => "capacity",
            Error::Transport(_) => "transport",
            Error::Timeout(_) => "timeout",
            Error::Auth { .. } => "auth",
            Error::HttpStatus { .. } => "http_status",
            Error::Registry { .. } => "registry",
            Error::Protocol(_) => "protocol",
        }
    }
}
