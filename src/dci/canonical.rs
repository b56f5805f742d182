//! Canonical JSON: byte-for-byte what Python's
//! `json.dumps(value, sort_keys=True, separators=(",", ":"))` produces (PROTOCOL §2.1).
//!
//! The writer is generic over [`JsonView`], a read-only view of a JSON tree, so the same code
//! serialises a `serde_json::Value` parsed from the wire and (in the binding) Python objects
//! walked in place, without building an intermediate tree.

use std::fmt::Write as _;

use serde_json::Value;

use super::error::{Error, Result};

/// One node of a JSON tree, as seen by the canonical writer.
pub enum View<V: JsonView> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`, as exact decimal text (optional leading `-`, digits).
    BigInt(String),
    Float(f64),
    Str(V::Str),
    Array(Vec<V>),
    Object(Vec<(V::Str, V)>),
}

/// A JSON tree the canonical writer can walk.
pub trait JsonView: Sized {
    type Str: AsRef<str>;
    fn view(&self) -> Result<View<Self>>;
}

/// Deepest nesting the writer follows; deeper input is refused rather than overflowing the stack.
pub const MAX_DEPTH: usize = 512;

/// Canonical JSON text of one value.
pub fn to_string<V: JsonView>(value: &V) -> Result<String> {
    let mut out = String::with_capacity(4096);
    write_value(value, &mut out, 0)?;
    Ok(out)
}

/// Appends the canonical JSON text of one value to `out` (lets a caller reuse its buffer).
pub fn write<V: JsonView>(value: &V, out: &mut String) -> Result<()> {
    write_value(value, out, 0)
}

/// How the header is rewritten for the second and third verification attempts (PROTOCOL §3):
/// schema defaults filled in, and null members kept or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderForm {
    AsReceived,
    DefaultsKeepNulls,
    DefaultsDropNulls,
}

impl HeaderForm {
    pub const ALL: [HeaderForm; 3] = [
        HeaderForm::AsReceived,
        HeaderForm::DefaultsKeepNulls,
        HeaderForm::DefaultsDropNulls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HeaderForm::AsReceived => "as_received",
            HeaderForm::DefaultsKeepNulls => "defaults_keep_nulls",
            HeaderForm::DefaultsDropNulls => "defaults_drop_nulls",
        }
    }
}

/// Schema defaults OpenSPP's header model fills in, as canonical JSON text.
const HEADER_DEFAULTS: [(&str, &str); 2] =
    [("is_msg_encrypted", "false"), ("version", "\"1.0.0\"")];

/// Canonical text of `{"header": header, "message": message}` — the bytes that are signed.
pub fn signing_payload<H: JsonView, M: JsonView>(
    header: &H,
    message: &M,
    form: HeaderForm,
) -> Result<String> {
    let mut out = String::with_capacity(4096);
    out.push_str("{\"header\":");
    match form {
        HeaderForm::AsReceived => write_value(header, &mut out, 1)?,
        HeaderForm::DefaultsKeepNulls => write_header_normalised(header, &mut out, false)?,
        HeaderForm::DefaultsDropNulls => write_header_normalised(header, &mut out, true)?,
    }
    out.push_str(",\"message\":");
    write_value(message, &mut out, 1)?;
    out.push('}');
    Ok(out)
}

fn write_header_normalised<V: JsonView>(
    header: &V,
    out: &mut String,
    drop_nulls: bool,
) -> Result<()> {
    let View::Object(entries) = header.view()? else {
        return write_value(header, out, 1);
    };
    // Each member is pre-rendered so defaults (literal text) and members sort together.
    let mut members: Vec<(String, String)> = Vec::with_capacity(entries.len() + 2);
    for (key, value) in entries {
        if drop_nulls && matches!(value.view()?, View::Null) {
            continue;
        }
        let mut text = String::new();
        write_value(&value, &mut text, 2)?;
        members.push((key.as_ref().to_owned(), text));
    }
    for (key, literal) in HEADER_DEFAULTS {
        if !members.iter().any(|(k, _)| k == key) {
            members.push((key.to_owned(), literal.to_owned()));
        }
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    out.push('{');
    for (i, (key, text)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(key, out);
        out.push(':');
        out.push_str(text);
    }
    out.push('}');
    Ok(())
}

fn write_value<V: JsonView>(value: &V, out: &mut String, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::Json(format!(
            "nesting deeper than {MAX_DEPTH} levels"
        )));
    }
    match value.view()? {
        View::Null => out.push_str("null"),
        View::Bool(true) => out.push_str("true"),
        View::Bool(false) => out.push_str("false"),
        View::Int(i) => {
            let _ = write!(out, "{i}");
        }
        View::BigInt(digits) => out.push_str(&digits),
        View::Float(f) => write_float(f, out),
        View::Str(s) => write_str(s.as_ref(), out),
        View::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(']');
        }
        View::Object(mut entries) => {
            // Rust orders `str` by UTF-8 bytes, which is Unicode code point order — Python's order.
            if !entries.is_sorted_by(|a, b| a.0.as_ref() <= b.0.as_ref()) {
                entries.sort_unstable_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(key.as_ref(), out);
                out.push(':');
                write_value(item, out, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A JSON string with `ensure_ascii=True` escaping, lowercase hex, astral characters as
/// surrogate pairs.
pub fn write_str(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !NEEDS_ESCAPE[bytes[i] as usize] {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        i += ch.len_utf8();
        start = i;
        let mut push_u = |unit: u32| {
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[((unit >> shift) & 0xF) as usize] as char);
            }
        };
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x10000 => push_u(c as u32),
            c => {
                let v = c as u32 - 0x10000;
                push_u(0xD800 + (v >> 10));
                push_u(0xDC00 + (v & 0x3FF));
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Bytes that start an escape: controls, `"`, `\\`, DEL and every non-ASCII lead byte.
/// (UTF-8 continuation bytes are consumed with their lead byte.)
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x7f;
        b += 1;
    }
    t
};

/// A float as Python's `repr` (and so `json.dumps`) writes it: shortest round-trip digits,
/// exponent form when the decimal exponent is below -4 or above 15, at least one fractional digit.
pub fn write_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Shortest round-trip digits, ties to even like Python's repr (ryu; Rust's `{:e}` rounds
    // ties up: 562949953421312.25 must print as ...312.2).
    let mut ryu_buf = ryu::Buffer::new();
    let text = ryu_buf.format_finite(f.abs());
    let (mantissa, exp) = text.split_once(['e', 'E']).unwrap_or((text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digit_buf = [0u8; 40];
    let mut n = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        if n < digit_buf.len() {
            digit_buf[n] = b;
            n += 1;
        }
    }
    // value = 0.d1d2... x 10^decpt once leading zeros are dropped.
    let lead = digit_buf[..n].iter().take_while(|b| **b == b'0').count();
    let end = n - digit_buf[lead..n]
        .iter()
        .rev()
        .take_while(|b| **b == b'0')
        .count();
    let decpt = int_part.len() as i32 + exp - lead as i32;
    let digits = std::str::from_utf8(&digit_buf[lead..end.max(lead + 1)]).unwrap_or("0");
    let ndigits = digits.len() as i32;
    let exp = decpt - 1;
    if f < 0.0 {
        out.push('-');
    }
    if !(-4 < decpt && decpt <= 16) {
        out.push_str(&digits[..1]);
        if ndigits > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..-decpt {
            out.push('0');
        }
        out.push_str(digits);
    } else if decpt >= ndigits {
        out.push_str(digits);
        for _ in 0..decpt - ndigits {
            out.push('0');
        }
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
}

/// Classifies a JSON number's text the way Python's `json.loads` would read it.
fn number_view<V: JsonView>(text: &str) -> View<V> {
    if text.contains(['.', 'e', 'E']) {
        return View::Float(text.parse().unwrap_or(f64::NAN));
    }
    match text.parse::<i64>() {
        Ok(i) => View::Int(i),
        // Beyond i64 the text is already exact decimal digits (JSON allows no leading zeros).
        Err(_) => View::BigInt(text.to_owned()),
    }
}

impl<'a> JsonView for &'a Value {
    type Str = &'a str;
    fn view(&self) -> Result<View<Self>> {
        let v: &'a Value = self;
        Ok(match v {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => number_view(n.as_str()),
            Value::String(s) => View::Str(s.as_str()),
            Value::Array(items) => View::Array(items.iter().collect()),
            Value::Object(map) => View::Object(map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        })
    }
}

/// Canonical JSON of a `serde_json::Value`.
pub fn value_to_string(value: &Value) -> Result<String> {
    to_string(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        value_to_string(&v).unwrap()
    }

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1e16, "1e+16"),
            (1e-7, "1e-07"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e300, "1.5e+300"),
            (123.456, "123.456"),
            (562_949_953_421_312.0 + 0.25, "562949953421312.2"), // a tie: Python rounds half to even
            (1.5e-7, "1.5e-07"),
            (12345678901234567890.0, "1.2345678901234567e+19"),
            (-2.5e-10, "-2.5e-10"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            let mut s = String::new();
            write_float(f, &mut s);
            assert_eq!(s, want, "{f:?}");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let mut s = String::new();
        write_str("a\"b\\c/\n\r\t\u{8}\u{c}\u{1}\u{7f}é€😀", &mut s);
        assert_eq!(
            s,
            r#""a\"b\\c/\n\r\t\b\f\u0001\u007f\u00e9\u20ac\ud83d\ude00""#
        );
    }

    #[test]
    fn numbers_keep_their_json_kind() {
        assert_eq!(
            canon("[10.0, 10, 1E400, -0, 123456789012345678901234567890, 1e2]"),
            "[10.0,10,Infinity,0,123456789012345678901234567890,100.0]"
        );
    }

    #[test]
    fn keys_sort_by_code_point() {
        assert_eq!(
            canon(r#"{"b":1,"a":{"z":[],"é":null,"😀":1,"\uffff":2}}"#),
            "{\"a\":{\"z\":[],\"\\u00e9\":null,\"\\uffff\":2,\"\\ud83d\\ude00\":1},\"b\":1}"
        );
    }

    #[test]
    fn header_forms_fill_defaults_and_drop_nulls() {
        let h: Value = serde_json::from_str(r#"{"a":null,"version":"2"}"#).unwrap();
        let m: Value = serde_json::from_str("{}").unwrap();
        assert_eq!(
            signing_payload(&&h, &&m, HeaderForm::AsReceived).unwrap(),
            r#"{"header":{"a":null,"version":"2"},"message":{}}"#
        );
        assert_eq!(
            signing_payload(&&h, &&m, HeaderForm::DefaultsKeepNulls).unwrap(),
            r#"{"header":{"a":null,"is_msg_encrypted":false,"version":"2"},"message":{}}"#
        );
        assert_eq!(
            signing_payload(&&h, &&m, HeaderForm::DefaultsDropNulls).unwrap(),
            r#"{"header":{"is_msg_encrypted":false,"version":"2"},"message":{}}"#
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(canon(&text).starts_with("[[["));
        let mut v = Value::Null;
        for _ in 0..(MAX_DEPTH + 5) {
            v = Value::Array(vec![v]);
        }
        assert!(matches!(value_to_string(&v), Err(Error::Json(_))));
    }
}
