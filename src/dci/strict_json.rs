//! Strict JSON for bodies a peer sends us: what Python's `json.loads` reads, minus everything that
//! makes two readers disagree or costs more than the input is worth.
//!
//! Refused: invalid UTF-8 (overlong forms, encoded surrogates), nesting deeper than a limit,
//! duplicate object keys (`"a"` and `"\u0061"` are the same key), `NaN`/`Infinity`, integers of
//! more than [`MAX_INT_DIGITS`] digits, float literals longer than [`MAX_FLOAT_CHARS`] or out of
//! range, unpaired UTF-16 surrogate escapes, raw control characters in strings. Every pass is
//! linear in the input; the depth is checked on the raw text before anything is parsed.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Longest integer accepted, in digits (CPython's own int/str conversion limit).
pub const MAX_INT_DIGITS: usize = 4300;
/// Longest float literal accepted: a longer one is not data.
pub const MAX_FLOAT_CHARS: usize = 400;
/// Deepest nesting a caller may allow (serde_json's own recursion limit is 128).
pub const MAX_DEPTH: usize = 128;

/// Parses `bytes` as one JSON document. The error says why, in words fit for the peer
/// (no input is echoed).
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    let max_depth = max_depth.min(MAX_DEPTH);
    let text = std::str::from_utf8(bytes).map_err(|_| "the body is not valid UTF-8".to_owned())?;
    scan(text.as_bytes(), max_depth)?;
    let invalid = |e: serde_json::Error| {
        // serde_json names both kinds of unpaired surrogate escape after the hex escape.
        if e.to_string().contains("hex escape") {
            let (line, column) = (e.line(), e.column());
            format!("invalid JSON: unpaired surrogate escape in a string at line {line} column {column}")
        } else {
            format!("invalid JSON: {e}")
        }
    };
    let mut de = serde_json::Deserializer::from_str(text);
    UniqueKeys.deserialize(&mut de).map_err(invalid)?;
    de.end().map_err(invalid)?;
    let value: Value = serde_json::from_str(text).map_err(invalid)?;
    check_numbers(&value)?;
    Ok(value)
}

/// One pass over the raw text, outside strings: nesting depth, and the bare words `NaN` and
/// `Infinity` (Python's extensions, which serde_json would only call "expected value").
/// Invalid JSON may be scanned wrongly, which is harmless: the parser refuses it next.
fn scan(text: &[u8], max_depth: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(format!("JSON nested deeper than {max_depth} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'N' if text[i..].starts_with(b"NaN") => {
                return Err("invalid JSON: NaN is not JSON".into())
            }
            b'I' if text[i..].starts_with(b"Infinity") => {
                return Err("invalid JSON: Infinity is not JSON".into())
            }
            _ => {}
        }
    }
    Ok(())
}

/// Walks a document refusing an object that names a key twice; builds nothing.
#[derive(Clone, Copy)]
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    // Objects, and (with serde_json's `arbitrary_precision`) numbers, which arrive as a one-entry
    // map: neither can repeat a key without being refused.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if !seen.insert(key) {
                return Err(A::Error::custom("duplicate object key"));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// Integers and floats within the bounds; floats finite.
fn check_numbers(value: &Value) -> Result<(), String> {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => check_number(n.as_str())?,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    Ok(())
}

fn check_number(text: &str) -> Result<(), String> {
    if text.contains(['.', 'e', 'E']) {
        if text.len() > MAX_FLOAT_CHARS {
            return Err(format!(
                "invalid JSON: number longer than {MAX_FLOAT_CHARS} characters"
            ));
        }
        if !text.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err("invalid JSON: number out of range".into());
        }
    } else if text.trim_start_matches('-').len() > MAX_INT_DIGITS {
        return Err(format!(
            "invalid JSON: integer longer than {MAX_INT_DIGITS} digits"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text.as_bytes(), 64).expect_err(text)
    }

    #[test]
    fn reads_what_python_reads() {
        let v = parse(
            br#" {"a": [1, -0, 1.5e3, "\u00e9\ud83d\ude00", null, true], "b": {"c": 10.0}} "#,
            64,
        )
        .unwrap();
        assert_eq!(v["a"][3], "é😀");
        assert_eq!(v["b"]["c"].to_string(), "10.0");
        let big = format!("[{}]", "9".repeat(MAX_INT_DIGITS));
        assert!(parse(big.as_bytes(), 64).is_ok());
        assert!(
            parse(br#"{"s": "[{\"[{"}"#, 1).is_ok(),
            "brackets in strings"
        );
        assert!(
            parse(br#"{"s": "NaN Infinity"}"#, 64).is_ok(),
            "words in strings"
        );
    }

    #[test]
    fn refuses_what_readers_disagree_on() {
        for (text, why) in [
            (r#"{"a": 1, "a": 2}"#, "duplicate"),
            (r#"{"a": 1, "\u0061": 2}"#, "duplicate"),
            (r#"[{"x": {"a": 1, "b": {}, "a": 3}}]"#, "duplicate"),
            (r#"{"a": NaN}"#, "NaN"),
            (r#"{"a": -Infinity}"#, "Infinity is not JSON"),
            (r#"{"a": Nonsense}"#, "expected value"),
            (r#"{"a": 1e999}"#, "out of range"),
            (r#"{"a": "\ud800"}"#, "surrogate"),
            (r#"{"a": "\udc00\ud800"}"#, "surrogate"),
            ("{\"a\": \"\u{1}\"}", "control character"),
            ("{} {}", "trailing characters"),
            ("", "EOF"),
            ("\u{feff}{}", "expected value"),
        ] {
            let e = err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
        assert!(err(&format!("[{}]", "7".repeat(MAX_INT_DIGITS + 1))).contains("digits"));
        assert!(err(&format!("[-{}]", "7".repeat(MAX_INT_DIGITS + 1))).contains("digits"));
        assert!(err(&format!("[0.{}]", "3".repeat(MAX_FLOAT_CHARS))).contains("characters"));
        assert!(parse(b"{\"a\": \"\xc0\xaf\"}", 64)
            .unwrap_err()
            .contains("UTF-8"));
        assert!(parse(b"{\"a\": \"\xed\xa0\x80\"}", 64)
            .unwrap_err()
            .contains("UTF-8"));
    }

    #[test]
    fn depth_is_checked_before_parsing() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nested(64).as_bytes(), 64).is_ok());
        assert!(err(&nested(65)).contains("deeper than 64"));
        assert!(err(&"[".repeat(100_000)).contains("deeper"));
        // The caller's limit is capped at serde_json's own.
        assert!(parse(nested(129).as_bytes(), 10_000)
            .unwrap_err()
            .contains("deeper than 128"));
    }
}
