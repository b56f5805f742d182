//! The protocol core: canonical JSON, signatures, keys, envelopes, the replay guard, the client.
//! Nothing here knows about Python, nor about the sandbox (`crate::sandbox`), which uses it.

pub mod auth;
pub mod callback;
pub mod canonical;
pub mod client;
pub mod doctor;
pub mod envelope;
pub mod error;
pub mod http;
pub mod ibr;
pub mod jwk;
pub mod keys;
pub mod keysource;
pub mod replay;
pub mod signature;
pub mod spec;
pub mod strict_json;

pub use error::{Error, Result};
