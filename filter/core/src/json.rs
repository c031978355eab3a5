//! Strict JSON for untrusted input: no duplicate object members (RFC 7515 §4 asks parsers to
//! reject them or use the last one; we reject), bounded nesting depth, and no trailing data.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Reason};

/// Nesting limit for JWS headers.
pub const HEADER_MAX_DEPTH: usize = 4;
/// Nesting limit for claim sets and other documents from the network.
pub const DOCUMENT_MAX_DEPTH: usize = 32;

/// Parses `bytes` as a JSON object under the strict rules. `what` names the document in errors
/// ("header", "claims") and `malformed` is the reason used for plain syntax or type errors.
pub fn parse_object(
    bytes: &[u8],
    max_depth: usize,
    malformed: Reason,
    what: &str,
) -> Result<Map<String, Value>, Error> {
    let flag = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Strict {
        depth_left: max_depth,
        flag: &flag,
    };
    let value = seed.deserialize(&mut de).and_then(|v| de.end().map(|_| v));
    if let Some(reason) = flag.get() {
        let msg = match reason {
            Reason::DuplicateJsonKey => format!("the {what} names a member twice"),
            _ => format!("the {what} is nested deeper than {max_depth} levels"),
        };
        return Err(Error::new(reason, msg));
    }
    match value {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::new(
            malformed,
            format!("the {what} is not a JSON object"),
        )),
        Err(_) => Err(Error::new(
            malformed,
            format!("the {what} is not valid JSON"),
        )),
    }
}

struct Strict<'f> {
    depth_left: usize,
    flag: &'f Cell<Option<Reason>>,
}

impl Strict<'_> {
    fn nested<E: serde::de::Error>(&self) -> Result<Strict<'_>, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(Strict {
                depth_left,
                flag: self.flag,
            }),
            None => {
                self.flag.set(Some(Reason::JsonTooDeep));
                Err(E::custom("too deep"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            depth_left: inner.depth_left,
            flag: inner.flag,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.flag.set(Some(Reason::DuplicateJsonKey));
                return Err(A::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(Strict {
                depth_left: inner.depth_left,
                flag: inner.flag,
            })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, depth: usize) -> Result<Map<String, Value>, Reason> {
        parse_object(s.as_bytes(), depth, Reason::MalformedHeader, "header").map_err(|e| e.reason())
    }

    #[test]
    fn accepts_plain_objects() {
        let m = parse(r#"{"a":1,"b":[1,{"c":"d"}],"e":null,"f":1.5}"#, 3).unwrap();
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert_eq!(
            parse(r#"{"alg":"HS256","alg":"none"}"#, 4),
            Err(Reason::DuplicateJsonKey)
        );
        assert_eq!(
            parse(r#"{"a":{"b":1,"b":2}}"#, 4),
            Err(Reason::DuplicateJsonKey)
        );
        // escapes that decode to the same name are duplicates too
        assert_eq!(
            parse(r#"{"alg":1,"\u0061lg":2}"#, 4),
            Err(Reason::DuplicateJsonKey)
        );
    }

    #[test]
    fn refuses_deep_nesting_without_stack_overflow() {
        assert_eq!(parse(r#"{"a":{"b":{"c":1}}}"#, 2), Err(Reason::JsonTooDeep));
        assert!(parse(r#"{"a":{"b":{"c":1}}}"#, 3).is_ok());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&deep, 32), Err(Reason::JsonTooDeep));
    }

    #[test]
    fn refuses_trailing_garbage_and_non_objects() {
        assert_eq!(parse(r#"{"a":1}x"#, 4), Err(Reason::MalformedHeader));
        assert_eq!(parse(r#"{"a":1}{"#, 4), Err(Reason::MalformedHeader));
        assert_eq!(parse(r#"[1]"#, 4), Err(Reason::MalformedHeader));
        assert_eq!(parse(r#""#, 4), Err(Reason::MalformedHeader));
        // trailing whitespace is still JSON
        assert!(parse("{\"a\":1} \n", 4).is_ok());
    }
}
