//! Compact JWS (RFC 7515 §7.1) parsing with every structural check done before any key is used.
//!
//! This is the strict front door for JWTs, magic-link tokens and anything else signed: the
//! signature is only checked (by the verifier) on a token that already passed all of this.

use serde_json::{Map, Value};

use crate::alg::Alg;
use crate::b64;
use crate::error::{Error, Reason};
use crate::json;

/// Default upper bound on a token's length (bytes).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Header members that carry or point at keys. The key must come from our config, never the token.
const UNTRUSTED_KEY_MEMBERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// A compact JWS whose structure and header passed the checks; its signature is not verified yet.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// The decoded header object.
    pub header: Map<String, Value>,
    /// The decoded payload bytes (not parsed: see [`CompactJws::claims`]).
    pub payload: Vec<u8>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Parses a compact JWS under the strict rules:
/// size limit, exactly three non-empty segments of canonical base64url, a header that is a JSON
/// object without duplicates or deep nesting, a supported `alg` (never `none`), no key-carrying
/// members (`jwk`, `jku`, `x5u`, `x5c`), no `crit`, no `b64: false`.
pub fn parse(token: &str, max_bytes: usize) -> Result<CompactJws<'_>, Error> {
    let (h, p, s) = segments(token, max_bytes)?;
    let header = json::parse_object(
        &b64::decode(h)?,
        json::HEADER_MAX_DEPTH,
        Reason::MalformedHeader,
        "header",
    )?;
    let alg = check_header(&header)?;
    let kid = optional_string(&header, "kid")?;
    let typ = optional_string(&header, "typ")?;
    if s.is_empty() {
        return Err(Error::new(
            Reason::MalformedToken,
            "the signature segment is empty",
        ));
    }
    let payload = b64::decode(p)?;
    let signature = b64::decode(s)?;
    // h and p are ASCII (they decoded as base64url), so this is their exact byte span.
    let signing_input = token
        .as_bytes()
        .get(..h.len() + 1 + p.len())
        .ok_or_else(|| Error::new(Reason::Internal, "signing input out of range"))?;
    Ok(CompactJws {
        alg,
        kid,
        typ,
        header,
        payload,
        signing_input,
        signature,
    })
}

/// The size limit, then exactly three segments, the header and payload non-empty.
fn segments(token: &str, max_bytes: usize) -> Result<(&str, &str, &str), Error> {
    if token.len() > max_bytes {
        return Err(Error::new(
            Reason::TokenTooLarge,
            format!("the token is longer than {max_bytes} bytes"),
        ));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::new(
            Reason::MalformedToken,
            "a compact JWS has exactly three dot-separated segments",
        ));
    };
    if h.is_empty() || p.is_empty() {
        return Err(Error::new(
            Reason::MalformedToken,
            "a token segment is empty",
        ));
    }
    Ok((h, p, s))
}

/// The header's rules: a supported `alg` (never `none`), no key it carries, no unencoded
/// payload, no `crit`. Returns the algorithm.
fn check_header(header: &Map<String, Value>) -> Result<Alg, Error> {
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::from_header(a)?,
        Some(_) => {
            return Err(Error::new(
                Reason::MalformedHeader,
                "the header's alg is not a string",
            ))
        }
        None => return Err(Error::new(Reason::MalformedHeader, "the header has no alg")),
    };
    if let Some(m) = UNTRUSTED_KEY_MEMBERS
        .iter()
        .find(|m| header.contains_key(**m))
    {
        return Err(Error::new(
            Reason::UntrustedHeaderKey,
            format!("the header carries `{m}`: keys named by the token are never trusted"),
        ));
    }
    if let Some(b) = header.get("b64") {
        if b != &Value::Bool(true) {
            return Err(Error::new(
                Reason::UnencodedPayload,
                "unencoded payloads (b64: false, RFC 7797) are not accepted",
            ));
        }
    }
    if header.contains_key("crit") {
        return Err(Error::new(
            Reason::UnsupportedCrit,
            "the header marks extensions as critical (crit) that are not supported",
        ));
    }
    Ok(alg)
}

fn optional_string(header: &Map<String, Value>, name: &str) -> Result<Option<String>, Error> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.clone())),
        Some(_) => Err(Error::new(
            Reason::MalformedHeader,
            format!("the header's {name} is not a string"),
        )),
    }
}

impl CompactJws<'_> {
    /// The payload as a JSON claim set (strict: no duplicates, bounded depth).
    pub fn claims(&self) -> Result<Map<String, Value>, Error> {
        json::parse_object(
            &self.payload,
            json::DOCUMENT_MAX_DEPTH,
            Reason::MalformedClaims,
            "claim set",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64::encode(header),
            b64::encode(payload),
            b64::encode(sig)
        )
    }

    fn reason(t: &str) -> Reason {
        parse(t, DEFAULT_MAX_TOKEN_BYTES).unwrap_err().reason()
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = tok(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"a"}"#,
            b"sig",
        );
        let j = parse(&t, DEFAULT_MAX_TOKEN_BYTES).unwrap();
        assert_eq!(j.alg, Alg::RS256);
        assert_eq!(j.kid.as_deref(), Some("k1"));
        assert_eq!(j.typ.as_deref(), Some("JWT"));
        assert_eq!(j.signature, b"sig");
        assert_eq!(j.claims().unwrap()["sub"], "a");
        let dot = t.rfind('.').unwrap();
        assert_eq!(j.signing_input, &t.as_bytes()[..dot]);
    }

    #[test]
    fn each_structural_fault_has_its_reason() {
        let good_h = r#"{"alg":"HS256"}"#;
        let p = r#"{"sub":"a"}"#;
        assert_eq!(reason(&tok(r#"{"alg":"none"}"#, p, b"")), Reason::AlgNone);
        assert_eq!(reason(&tok(r#"{"alg":"NoNe"}"#, p, b"x")), Reason::AlgNone);
        assert_eq!(
            reason(&tok(r#"{"alg":"XS256"}"#, p, b"x")),
            Reason::AlgUnsupported
        );
        assert_eq!(
            reason(&tok(r#"{"typ":"JWT"}"#, p, b"x")),
            Reason::MalformedHeader
        );
        assert_eq!(
            reason(&tok(r#"{"alg":5}"#, p, b"x")),
            Reason::MalformedHeader
        );
        assert_eq!(
            reason(&tok(r#"{"alg":"HS256","kid":1}"#, p, b"x")),
            Reason::MalformedHeader
        );
        assert_eq!(
            reason(&tok(r#"["HS256"]"#, p, b"x")),
            Reason::MalformedHeader
        );
        for m in ["jwk", "jku", "x5u", "x5c"] {
            let h = format!(r#"{{"alg":"RS256","{m}":"x"}}"#);
            assert_eq!(reason(&tok(&h, p, b"x")), Reason::UntrustedHeaderKey, "{m}");
        }
        assert_eq!(
            reason(&tok(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, p, b"x")),
            Reason::UnsupportedCrit
        );
        assert_eq!(
            reason(&tok(
                r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
                p,
                b"x"
            )),
            Reason::UnencodedPayload
        );
        assert_eq!(
            reason(&tok(r#"{"alg":"HS256","alg":"HS256"}"#, p, b"x")),
            Reason::DuplicateJsonKey
        );
        assert_eq!(
            reason(&tok(r#"{"alg":"HS256","x":{"y":{"z":{"w":{}}}}}"#, p, b"x")),
            Reason::JsonTooDeep
        );

        let t = tok(good_h, p, b"x");
        assert_eq!(reason(&format!("{t}.")), Reason::MalformedToken);
        assert_eq!(reason(&format!("{t}.x.y")), Reason::MalformedToken); // JWE shape
        assert_eq!(reason(&t[..t.rfind('.').unwrap()]), Reason::MalformedToken);
        assert_eq!(
            reason(&format!("{}.", &t[..t.rfind('.').unwrap()])),
            Reason::MalformedToken
        );
        assert_eq!(reason(&format!("{t}=")), Reason::BadBase64);
        assert_eq!(reason(&format!("{t} ")), Reason::BadBase64);
        assert_eq!(reason(&format!("{t}\n")), Reason::BadBase64);
        let std_alphabet = tok(good_h, p, &[0xfb, 0xff])
            .replace('-', "+")
            .replace('_', "/");
        assert_eq!(reason(&std_alphabet), Reason::BadBase64);
        // "eQ" and "eR" decode to the same byte only if stray bits are allowed
        let h = b64::encode(good_h);
        assert_eq!(reason(&format!("{h}.eR.eQ")), Reason::BadBase64);
        assert_eq!(parse(&format!("{h}.eQ.eQ"), 100).unwrap().payload, b"y");
        assert_eq!(reason(&format!("{h}==.eQ.eQ")), Reason::BadBase64);
    }

    #[test]
    fn size_limit_is_checked_first() {
        let t = tok(r#"{"alg":"HS256"}"#, &"a".repeat(100), b"x");
        assert_eq!(parse(&t, 50).unwrap_err().reason(), Reason::TokenTooLarge);
        assert!(parse(&t, t.len()).is_ok());
    }
}
