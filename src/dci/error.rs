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
    /// The answer is not a DCI message this client can read, or is not bound to its request
    /// (another action, receiver, transaction or reference_id, a replayed message_id).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A readable answer that does not decide the question asked: a search item that is pending,
    /// missing, duplicated or of an unreadable shape; an enrolled status other than yes/no. Never
    /// to be read as "nothing found" or "not enrolled".
    #[error("undecided: {0}")]
    Undecided(String),
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
            Error::Undecided(_) => "undecided",
        }
    }
}

/// Most characters of peer text kept in an error or a result.
pub const MAX_PEER_TEXT: usize = 300;
/// Shortest run of a secret's characters masked when a peer echoes only part of it.
const MIN_ECHO: usize = 8;
/// Peer text looked at (a secret cut at this point lies far beyond what is kept).
const SCAN_LIMIT: usize = 4096;

/// Makes text a peer sent (a registry's or a token endpoint's error code, message, reason) safe
/// to put in an error or a result — the one place where peer text enters them (PROTOCOL §5).
///
/// Every secret it knows (client secret, bearer or OAuth2 token), in the forms it travels in
/// (as is, form-encoded, inside HTTP Basic), is replaced by `***` wherever the peer echoes it,
/// whole or any run of at least 8 of its characters, ignoring ASCII case. Control characters
/// become spaces and the text is cut to [`MAX_PEER_TEXT`] characters, after masking.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Each secret form, lower-case ASCII.
    forms: Vec<zeroize::Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Also masks `secret` and its form-encoded spelling.
    pub fn with_secret(mut self, secret: &str) -> Self {
        self.add(secret.as_bytes());
        let encoded: String = form_encode(secret);
        if encoded != secret {
            self.add(encoded.as_bytes());
        }
        self
    }

    /// Also masks the HTTP Basic credentials `base64(user:secret)`.
    pub fn with_basic(mut self, user: &str, secret: &str) -> Self {
        use base64::Engine as _;
        let joined = zeroize::Zeroizing::new(format!("{user}:{secret}"));
        let b64 = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(joined.as_bytes()),
        );
        self.add(b64.as_bytes());
        self
    }

    fn add(&mut self, form: &[u8]) {
        if !form.is_empty() {
            self.forms
                .push(zeroize::Zeroizing::new(form.to_ascii_lowercase()));
        }
    }

    /// `peer` made safe (see the type).
    pub fn text(&self, peer: &str) -> String {
        let mut cut = peer.len().min(SCAN_LIMIT);
        while !peer.is_char_boundary(cut) {
            cut -= 1;
        }
        let peer = &peer[..cut];
        let lower = peer.as_bytes().to_ascii_lowercase();
        let mut masked = vec![false; lower.len()];
        for form in &self.forms {
            mask_echoes(&lower, form, &mut masked);
        }
        let mut out = String::with_capacity(peer.len().min(MAX_PEER_TEXT));
        let (mut kept, mut in_mask) = (0usize, false);
        for (i, c) in peer.char_indices() {
            if kept >= MAX_PEER_TEXT {
                break;
            }
            if masked[i..i + c.len_utf8()].iter().any(|m| *m) {
                if !in_mask {
                    if kept + 3 > MAX_PEER_TEXT {
                        break;
                    }
                    out.push_str("***");
                    kept += 3;
                    in_mask = true;
                }
                continue;
            }
            in_mask = false;
            kept += 1;
            out.push(if c.is_control() { ' ' } else { c });
        }
        out
    }
}

/// Marks in `masked` every window of `text` of `min(MIN_ECHO, len(form))` bytes that occurs in
/// `form` (both lower-case): overlapping windows cover every echoed run of that length or more.
fn mask_echoes(text: &[u8], form: &[u8], masked: &mut [bool]) {
    let w = form.len().min(MIN_ECHO);
    if w == 0 || text.len() < w {
        return;
    }
    // Slices of the (zeroized) form: no copy of the secret.
    let mut windows: Vec<&[u8]> = form.windows(w).collect();
    windows.sort_unstable();
    for (i, win) in text.windows(w).enumerate() {
        if windows.binary_search(&win).is_ok() {
            masked[i..i + w].iter_mut().for_each(|m| *m = true);
        }
    }
}

/// `application/x-www-form-urlencoded` spelling of `s` (as a secret travels in a form body).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_secrets_are_masked_whole_partly_encoded_and_in_any_case() {
        let r = Redactor::new()
            .with_secret("s3cr3t-v@lue-0123456789")
            .with_basic("client", "s3cr3t-v@lue-0123456789")
            .with_secret("tok-abcdef0123456789");
        let t = |s: &str| r.text(s);
        assert_eq!(t("bad secret s3cr3t-v@lue-0123456789!"), "bad secret ***!");
        assert_eq!(t("S3CR3T-V@LUE-0123 cut"), "*** cut");
        assert_eq!(t("form: s3cr3t-v%40lue-0123456789"), "form: ***");
        assert!(!t("Basic Y2xpZW50OnMzY3IzdC12QGx1ZS0wMTIzNDU2Nzg5").contains("Y2xpZW50"));
        assert_eq!(t("Bearer tok-abcdef0123456789."), "Bearer ***.");
        assert_eq!(t("line\nbreak"), "line break");
        assert_eq!(t("short and harmless"), "short and harmless");
        let long = format!("{}s3cr3t-v@lue-0123456789", "x".repeat(290));
        assert!(!t(&long).contains("s3cr3t"), "masked before it is cut");
        assert_eq!(t(&"é".repeat(400)).chars().count(), MAX_PEER_TEXT);
        let tiny = Redactor::new().with_secret("abc");
        assert_eq!(tiny.text("xabcx ab"), "x***x ab");
    }
}
