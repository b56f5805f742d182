//! Envelope pieces shared by everything that sends DCI messages (PROTOCOL §1).

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::canonical::{self, HeaderForm};
use super::error::{Error, Result};
use super::jwk::make_kid;
use super::keys::SigningKey;
use super::signature::{self, DEFAULT_LIFETIME};

/// Protocol version written in every header.
pub const VERSION: &str = "1.0.0";

/// A fresh UUIDv4 for `message_id`, `transaction_id` or `reference_id`.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Current Unix time in seconds.
pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

/// A DCI timestamp: UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn timestamp(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Status of a callback or sync-response header (and of a response item).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Rcvd,
    Pdng,
    Succ,
    Rjct,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Rcvd => "rcvd",
            Status::Pdng => "pdng",
            Status::Succ => "succ",
            Status::Rjct => "rjct",
        }
    }
}

/// The header of an outbound request: the keys of PROTOCOL §1, with a fresh `message_id` and the
/// current `message_ts`. Build a new one for every send, retries included.
///
/// `sender_uri` is the callback URL of the call; without one the key is omitted (the spec types
/// it as a URI string, so `null` does not validate) — see [`with_null_sender_uri`] for peers that
/// need it.
pub fn request_header(
    action: &str,
    sender_id: &str,
    sender_uri: Option<&str>,
    receiver_id: &str,
    total_count: usize,
) -> Value {
    let mut header = json!({
        "version": VERSION,
        "message_id": new_id(),
        "message_ts": timestamp(now_unix()),
        "action": action,
        "sender_id": sender_id,
        "receiver_id": receiver_id,
        "total_count": total_count,
        "is_msg_encrypted": false,
        "meta": {},
    });
    if let Some(uri) = sender_uri {
        header["sender_uri"] = uri.into();
    }
    header
}

/// Adds `"sender_uri": null` to a request header that has no callback URL: for peers that
/// re-serialise received headers through a schema that writes absent optional keys as null
/// before hashing (OpenSPP), so that both sides hash the same text. Off by default.
pub fn with_null_sender_uri(mut header: Value) -> Value {
    if let Some(obj) = header.as_object_mut() {
        obj.entry("sender_uri").or_insert(Value::Null);
    }
    header
}

/// The header of a callback or sync response (`MsgCallbackHeader`): the request keys without
/// `sender_uri`, plus `status`, `completed_count` and, when given, `status_reason_code` /
/// `status_reason_message`.
#[derive(Clone, Debug)]
pub struct ResponseHeader<'a> {
    pub action: &'a str,
    pub status: Status,
    pub status_reason_code: Option<&'a str>,
    pub status_reason_message: Option<&'a str>,
    pub total_count: usize,
    pub completed_count: usize,
    pub sender_id: &'a str,
    pub receiver_id: &'a str,
}

impl ResponseHeader<'_> {
    /// The header as JSON, with a fresh `message_id` and the current `message_ts`.
    pub fn to_value(&self) -> Value {
        let mut header = json!({
            "version": VERSION,
            "message_id": new_id(),
            "message_ts": timestamp(now_unix()),
            "action": self.action,
            "status": self.status.as_str(),
            "total_count": self.total_count,
            "completed_count": self.completed_count,
            "sender_id": self.sender_id,
            "receiver_id": self.receiver_id,
            "is_msg_encrypted": false,
            "meta": {},
        });
        let obj = header.as_object_mut().expect("object literal");
        if let Some(code) = self.status_reason_code {
            obj.insert("status_reason_code".into(), code.into());
        }
        if let Some(text) = self.status_reason_message {
            obj.insert("status_reason_message".into(), text.into());
        }
        header
    }
}

/// Who signs outbound envelopes: a key, the `sender_id` and `key_id` of its kid, and the
/// signature lifetime.
#[derive(Clone, Debug)]
pub struct Signer {
    key: Arc<SigningKey>,
    sender_id: String,
    key_id: String,
    lifetime: i64,
}

impl Signer {
    /// Checks that the ids can be written in a kid (non-empty, no `|`, `"` or line break).
    pub fn new(key: Arc<SigningKey>, sender_id: &str, key_id: &str) -> Result<Self> {
        for (what, value) in [("sender_id", sender_id), ("key_id", key_id)] {
            if value.is_empty() || value.contains(['|', '"', '\n', '\r']) {
                return Err(Error::Config(format!(
                    "{what} must be non-empty and contain no '|', '\"' or line breaks"
                )));
            }
        }
        Ok(Signer {
            key,
            sender_id: sender_id.to_owned(),
            key_id: key_id.to_owned(),
            lifetime: DEFAULT_LIFETIME,
        })
    }

    /// The same signer with another signature lifetime (seconds, positive).
    pub fn with_lifetime(mut self, lifetime: i64) -> Self {
        self.lifetime = lifetime.max(1);
        self
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn sender_id(&self) -> &str {
        &self.sender_id
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `<sender_id>|<key_id>|<alg>`.
    pub fn kid(&self) -> String {
        make_kid(&self.sender_id, &self.key_id, self.key.algorithm())
    }

    /// The `signature` field for canonical payload text, created at `created`.
    pub fn sign_payload(&self, payload: &str, created: i64) -> Result<String> {
        signature::sign_payload(
            payload,
            &self.key,
            &self.sender_id,
            &self.key_id,
            created,
            created + self.lifetime,
        )
    }
}

/// The body of a signed envelope `{"header", "message", "signature"}` as JSON text.
///
/// Header and message are written in their canonical form (sorted keys, ASCII escapes): that is
/// valid JSON, and it is exactly the text that was hashed, so the envelope is serialised once.
/// Without a signer the `signature` is the empty string (PROTOCOL §2.6: explicit opt-in only).
pub fn envelope_body(header: &Value, message: &Value, signer: Option<&Signer>) -> Result<String> {
    let payload = canonical::signing_payload(&header, &message, HeaderForm::AsReceived)?;
    let signature = match signer {
        Some(s) => s.sign_payload(&payload, now_unix())?,
        None => String::new(),
    };
    Ok(body_from_payload(payload, &signature))
}

/// Turns the canonical payload `{"header":…,"message":…}` into the envelope body by appending
/// the `signature` member.
pub fn body_from_payload(mut payload: String, signature: &str) -> String {
    debug_assert!(payload.ends_with('}'));
    payload.pop();
    payload.push_str(",\"signature\":");
    canonical::write_str(signature, &mut payload);
    payload.push('}');
    payload
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_have_the_header_form() {
        assert_eq!(super::timestamp(1705314600), "2024-01-15T10:30:00Z");
        assert_eq!(super::new_id().len(), 36);
    }

    #[test]
    fn a_signed_envelope_body_verifies_as_received() {
        use super::*;
        use crate::dci::keys::Algorithm;
        use crate::dci::signature::{check, Keys, Policy};

        let key = Arc::new(SigningKey::generate(Algorithm::Ed25519, 0).unwrap());
        let signer = Signer::new(key.clone(), "sp.example", "k1").unwrap();
        let header = request_header("search", "sp.example", None, "ibr.example", 1);
        assert_eq!(header.as_object().unwrap().len(), 9);
        assert!(header.get("sender_uri").is_none(), "omitted, never null");
        let with_null = with_null_sender_uri(header.clone());
        assert_eq!(with_null["sender_uri"], Value::Null);
        let cb = request_header(
            "search",
            "sp.example",
            Some("https://sp/cb"),
            "ibr.example",
            1,
        );
        assert_eq!(with_null_sender_uri(cb)["sender_uri"], "https://sp/cb");
        let message = serde_json::json!({"transaction_id": "t", "name": "Zoë \u{1F600}"});
        let body = envelope_body(&header, &message, Some(&signer)).unwrap();
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["message"], message);
        let verdict = check(
            parsed["signature"].as_str().unwrap(),
            &&parsed["header"],
            &&parsed["message"],
            &Keys::One(&key.verifying_key()),
            Policy::at(super::now_unix()),
        )
        .unwrap();
        assert!(verdict.is_valid(), "{verdict:?}");
        let unsigned: Value =
            serde_json::from_str(&envelope_body(&header, &message, None).unwrap()).unwrap();
        assert_eq!(unsigned["signature"], "");
        let reply = ResponseHeader {
            action: "on-search",
            status: Status::Succ,
            status_reason_code: None,
            status_reason_message: Some("ok"),
            total_count: 2,
            completed_count: 2,
            sender_id: "ibr.example",
            receiver_id: "sp.example",
        }
        .to_value();
        assert_eq!(reply["status"], "succ");
        assert_eq!(reply["status_reason_message"], "ok");
        assert!(reply.get("status_reason_code").is_none() && reply.get("sender_uri").is_none());
    }
}
