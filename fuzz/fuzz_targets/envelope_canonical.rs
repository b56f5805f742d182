//! Network JSON → canonical JSON (PROTOCOL §2.1), the bytes every signature covers.
//!
//! Properties: a body serde_json accepts (recursion limit 128) is always writable (the writer's
//! limit is 512); the output is printable ASCII and parses as JSON; writing the parsed output
//! again gives the same text (unless a float overflowed to `Infinity`, which is not JSON);
//! `signing_payload` as received is exactly `{"header":<h>,"message":<m>}` and the normalised
//! header forms are JSON objects too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spp_dci_ibr::dci::canonical::{signing_payload, value_to_string, HeaderForm};

/// True when a number in `v` is a float that does not fit an f64 (written `Infinity`).
fn has_overflowing_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            let t = n.as_str();
            t.contains(['.', 'e', 'E']) && !t.parse::<f64>().is_ok_and(f64::is_finite)
        }
        Value::Array(a) => a.iter().any(has_overflowing_float),
        Value::Object(o) => o.values().any(has_overflowing_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let out = value_to_string(&value).expect("serde_json's depth limit is below the writer's");
    assert!(
        out.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "canonical JSON must be printable ASCII: {out:?}"
    );
    let finite = !has_overflowing_float(&value);
    if finite {
        let again: Value = serde_json::from_str(&out).expect("canonical output parses as JSON");
        assert_eq!(
            value_to_string(&again).expect("re-canonicalise"),
            out,
            "canonicalisation is not idempotent"
        );
    }

    // The signed payload, with this value as both header and message.
    let payload = signing_payload(&&value, &&value, HeaderForm::AsReceived).expect("payload");
    assert_eq!(payload, format!("{{\"header\":{out},\"message\":{out}}}"));
    for form in [HeaderForm::DefaultsKeepNulls, HeaderForm::DefaultsDropNulls] {
        let p = signing_payload(&&value, &&value, form).expect("normalised payload");
        if finite {
            let parsed: Value = serde_json::from_str(&p).expect("normalised payload parses");
            assert_eq!(value_to_string(&parsed).expect("payload"), p, "{form:?}");
            if let Some(h) = parsed["header"].as_object().filter(|_| value.is_object()) {
                // Defaults are present; with nulls dropped, none of the members is null.
                for key in ["is_msg_encrypted", "version"] {
                    assert!(h.contains_key(key), "{form:?} fills {key}");
                }
                if form == HeaderForm::DefaultsDropNulls {
                    assert!(h.values().all(|v| !v.is_null()), "{form:?} keeps a null");
                }
            }
        }
    }
});
