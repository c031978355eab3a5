//! Published JOSE examples (RFC 7515 Appendix A, RFC 7520 / RFC 7797 / RFC 8037 via the
//! ietf-jose cookbook) against our JWK parsing, JWS parsing and native backend.
//!
//! The vectors live outside the repository, in `shared/testdata/jose-vectors/` beside the
//! repository root (see its README); a missing file fails the test rather than skipping it.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use edgegate::backend::{NativeBackend, SignatureBackend};
use edgegate::jwk::{KeySet, PublicKey};
use edgegate::{b64, jws, Alg, Error, Reason};
use serde_json::Value;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/jose-vectors"
);

fn vectors(file: &str) -> Vec<Value> {
    let path = format!("{DIR}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn key_set(v: &Value) -> Result<KeySet, Vec<Error>> {
    let jwks = serde_json::json!({ "keys": [v["verification_key"].clone()] });
    KeySet::parse_jwks(jwks.to_string().as_bytes())
}

/// Parses, selects the key, verifies.
fn verify(ks: &KeySet, token: &str) -> Result<(), Error> {
    let j = jws::parse(token, jws::DEFAULT_MAX_TOKEN_BYTES)?;
    let jwk = ks.select(j.kid.as_deref(), j.alg)?;
    NativeBackend.verify(j.alg, &jwk.key, j.signing_input, &j.signature)
}

/// Changes the character at `i` of a base64url segment to another letter of the same case
/// class, which keeps the encoding canonical as long as `i` is not the segment's last char.
fn flip_char(token: &str, i: usize) -> String {
    let mut b = token.as_bytes().to_vec();
    b[i] = match b[i] {
        c @ b'a'..=b'y' | c @ b'A'..=b'Y' => c + 1,
        b'z' => b'a',
        b'Z' => b'A',
        b'0'..=b'8' => b[i] + 1,
        _ => b'A',
    };
    String::from_utf8(b).unwrap()
}

/// What happened to each vector.
#[derive(Debug, PartialEq)]
enum Outcome {
    Verified,
    Refused(Reason),
}

fn run(v: &Value) -> Outcome {
    let section = v["section"].as_str().unwrap();
    let token = v["compact"].as_str().unwrap();
    let parsed = jws::parse(token, jws::DEFAULT_MAX_TOKEN_BYTES);
    let j = match parsed {
        Ok(j) => j,
        Err(e) => return Outcome::Refused(e.reason()),
    };
    assert_eq!(j.alg.name(), v["alg"].as_str().unwrap(), "{section}");
    assert_eq!(
        j.payload,
        v["payload_text"].as_str().unwrap().as_bytes(),
        "{section}"
    );
    let ks = key_set(v).unwrap_or_else(|e| panic!("{section}: key refused: {e:?}"));
    verify(&ks, token).unwrap_or_else(|e| panic!("{section}: {e}"));

    // A changed payload byte: the signature no longer verifies.
    let first_dot = token.find('.').unwrap();
    let bad = flip_char(token, first_dot + 2);
    assert_eq!(
        verify(&ks, &bad).unwrap_err().reason(),
        Reason::BadSignature,
        "{section}: payload flip"
    );
    // A changed header byte (inside the base64 of a JSON string: stays parseable or is refused
    // as such, never verifies).
    let bad = flip_char(token, 0);
    assert!(verify(&ks, &bad).is_err(), "{section}: header flip");
    // A changed signature byte, re-encoded canonically.
    let (input, sig) = token.rsplit_once('.').unwrap();
    for pos in [0, 7, j.signature.len() - 1] {
        let mut s = b64::decode(sig).unwrap();
        s[pos] ^= 0x04;
        let bad = format!("{input}.{}", b64::encode(&s));
        let reason = verify(&ks, &bad).unwrap_err().reason();
        // ECDSA: a flip can push r or s past the group order: then the format check refuses it.
        let ok = reason == Reason::BadSignature
            || (matches!(j.alg, Alg::ES256 | Alg::ES384 | Alg::ES512)
                && reason == Reason::BadSignatureFormat);
        assert!(ok, "{section}: signature flip at {pos}: {reason}");
    }
    // A truncated signature: wrong length for the algorithm.
    let mut s = b64::decode(sig).unwrap();
    s.pop();
    let bad = format!("{input}.{}", b64::encode(&s));
    assert_eq!(
        verify(&ks, &bad).unwrap_err().reason(),
        Reason::BadSignatureFormat,
        "{section}: truncated"
    );
    Outcome::Verified
}

/// Runs every vector of `file` and compares (section, outcome) in file order with `want`.
fn assert_outcomes(file: &str, want: &[(&str, Outcome)]) {
    let got: Vec<(String, Outcome)> = vectors(file)
        .iter()
        .map(|v| (v["section"].as_str().unwrap().to_string(), run(v)))
        .collect();
    let got: Vec<(&str, &Outcome)> = got.iter().map(|(s, o)| (s.as_str(), o)).collect();
    let want: Vec<(&str, &Outcome)> = want.iter().map(|(s, o)| (*s, o)).collect();
    assert_eq!(got, want, "{file}");
}

#[test]
fn rfc7515_appendix_a() {
    let want = [
        ("RFC 7515 Appendix A.1", Outcome::Verified),
        ("RFC 7515 Appendix A.2", Outcome::Verified),
        ("RFC 7515 Appendix A.3", Outcome::Verified),
        // ES512 (P-521)
        ("RFC 7515 Appendix A.4", Outcome::Verified),
        // alg none is never accepted
        ("RFC 7515 Appendix A.5", Outcome::Refused(Reason::AlgNone)),
    ];
    assert_outcomes("rfc7515_appendix_a.json", &want);
}

#[test]
fn jose_cookbook() {
    let want = [
        ("RFC 7520 section 4.1", Outcome::Verified),
        ("RFC 7520 section 4.2", Outcome::Verified),
        // ES512 (P-521)
        ("RFC 7520 section 4.3", Outcome::Verified),
        ("RFC 7520 section 4.4", Outcome::Verified),
        // detached content: the payload segment is empty
        (
            "RFC 7520 section 4.5",
            Outcome::Refused(Reason::MalformedToken),
        ),
        // b64: false (RFC 7797) is refused
        (
            "RFC 7797 section 4.2",
            Outcome::Refused(Reason::UnencodedPayload),
        ),
        ("RFC 8037 Appendix A.4", Outcome::Verified),
    ];
    assert_outcomes("jose_cookbook.json", &want);
}

/// ECDSA `r || s` as a DER SEQUENCE of two INTEGERs (long-form length when over 127 bytes).
fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
    let int = |x: &[u8]| {
        let x = &x[x.iter().position(|b| *b != 0).unwrap_or(x.len() - 1)..];
        let pad = x[0] & 0x80 != 0;
        let mut v = vec![0x02, (x.len() + usize::from(pad)) as u8];
        if pad {
            v.push(0);
        }
        v.extend_from_slice(x);
        v
    };
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() > 127 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

#[test]
fn es512_vectors_load_p521_keys_that_fit_only_es512() {
    let mut seen = 0;
    for v in vectors("jose_cookbook.json")
        .iter()
        .chain(vectors("rfc7515_appendix_a.json").iter())
    {
        if v["alg"] == "ES512" {
            seen += 1;
            let ks = key_set(v).unwrap();
            assert_eq!(ks.len(), 1);
            assert!(matches!(ks.keys()[0].key, PublicKey::P521(_)));
            assert!(ks.keys()[0].fits(Alg::ES512));
            for alg in [Alg::ES256, Alg::ES384, Alg::RS512, Alg::HS512] {
                assert!(!ks.keys()[0].fits(alg), "{alg}");
            }
            // the same signature as DER (what a naive signer emits) is refused by its format
            let token = v["compact"].as_str().unwrap();
            let (input, sig) = token.rsplit_once('.').unwrap();
            let raw = b64::decode(sig).unwrap();
            assert_eq!(raw.len(), 132);
            let bad = format!("{input}.{}", b64::encode(der(&raw[..66], &raw[66..])));
            assert_eq!(
                verify(&ks, &bad).unwrap_err().reason(),
                Reason::BadSignatureFormat
            );
        }
    }
    assert_eq!(seen, 2);
}

#[test]
fn algorithm_confusion_with_a_published_rsa_key() {
    // The classic attack: HS256 "signed" with the RSA public key's bytes as the HMAC secret.
    let v = vectors("rfc7515_appendix_a.json")
        .into_iter()
        .find(|v| v["alg"] == "RS256")
        .unwrap();
    let mut jwk = v["verification_key"].clone();
    jwk["kid"] = "rsa1".into();
    let ks = KeySet::from_jwks_value(&serde_json::json!({ "keys": [jwk] })).unwrap();
    let PublicKey::Rsa(rsa) = &ks.keys()[0].key else {
        panic!()
    };
    use hmac::Mac as _;
    for (header, want) in [
        (r#"{"alg":"HS256","kid":"rsa1"}"#, Reason::AlgKeyMismatch),
        (r#"{"alg":"HS256"}"#, Reason::NoMatchingKey),
    ] {
        let input = format!(
            "{}.{}",
            b64::encode(header),
            b64::encode(r#"{"sub":"admin"}"#)
        );
        for secret in [
            rsa.modulus().to_vec(),
            v["verification_key"]["n"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
        ] {
            let mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret)
                .unwrap()
                .chain_update(input.as_bytes())
                .finalize()
                .into_bytes();
            let token = format!("{input}.{}", b64::encode(mac));
            assert_eq!(verify(&ks, &token).unwrap_err().reason(), want, "{header}");
            // and the backend refuses it even if a caller skipped select
            let j = jws::parse(&token, 10_000).unwrap();
            assert_eq!(
                NativeBackend
                    .verify(Alg::HS256, &ks.keys()[0].key, j.signing_input, &j.signature)
                    .unwrap_err()
                    .reason(),
                Reason::AlgKeyMismatch
            );
        }
    }
}
