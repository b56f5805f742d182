//! Envelope pieces shared by everything that sends DCI messages (PROTOCOL §1).

use chrono::{DateTime, SecondsFormat, Utc};

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

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_have_the_header_form() {
        assert_eq!(super::timestamp(1705314600), "2024-01-15T10:30:00Z");
        assert_eq!(super::new_id().len(), 36);
    }
}
