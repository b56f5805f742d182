//! JSON text read strictly: an object with two members of one name is refused at any depth
//! (serde_json would silently keep the last one, and another reader the first).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Parses JSON text, refusing duplicate member names; the error text names the problem and the
/// position, never the content.
pub fn from_slice(text: &[u8]) -> Result<Value, String> {
    let mut check = serde_json::Deserializer::from_slice(text);
    NoDuplicates
        .deserialize(&mut check)
        .and_then(|()| check.end())
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(text).map_err(|e| e.to_string())
}

/// Walks a document without building it, failing on the first repeated member name.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
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
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(de::Error::custom("an object has a duplicate key"));
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_member_names_are_refused_at_any_depth() {
        for text in [
            r#"{"a": 1, "a": 1}"#,
            r#"{"x": [0, {"b": {"c": 1, "c": 2}}]}"#,
            r#"{"\u0061": 1, "a": 2}"#,
            r#"[{"k": 1, "k": null}]"#,
        ] {
            let err = from_slice(text.as_bytes()).unwrap_err();
            assert!(err.contains("duplicate key"), "{text}: {err}");
        }
        let value = from_slice(br#"{"a": {"a": [1, 1.0, 1e400, "a"]}, "b": {"a": 1}}"#).unwrap();
        assert_eq!(value["b"]["a"], 1);
        assert!(from_slice(b"{} x").is_err());
        assert!(from_slice(b"").is_err());
    }
}
