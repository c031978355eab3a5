//! Fixed signing keys and JWKs for tests and benchmarks (never for production use).
//!
//! Self-contained (only external crates, no `edgegate`) so that the core's unit tests, its
//! integration tests, benches and the wasm bench examples, and host-tests all use it as
//! `edgegate_testkit::test_keys`.
//! The RSA key was made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`;
//! the EC and Ed25519 keys come from fixed scalars/seeds.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;

/// PKCS#1 RSAPrivateKey DER of a 2048-bit RSA test key, base64.
const RSA_2048_PKCS1: &str = "MIIEpAIBAAKCAQEAnFlvdeyQuja8wMw9FkxbG9JjXuqjFlnt9Np3F5cw7e4mWRO+m/nWYxpYYLqMsBe4DSJlIvaXpavGJo0VGvRKjYPqNWoPX/aT8An8hF6GuSSSbLvzUP8R2doHEAneWISmUM0U7nyFEkZHVU7ZaNMTwQC+OCeJ0MoL4Z+AC3DJuh2iSW5YEI9D00krzc7EjsC0PmGr6wuZMIJ2Z6TVk+lTF+3BIFE2mIujrZItBqu675rzebrToaXdlMcJotQDWwts0xtwCoZ7kQ/EqoN9zDrTEIedsbK0mKsTBKi9b3Uiz/2a5/jjMwVNjkeJmdrB/w+WpmOwfm1iuI3DyvFJS5sa6wIDAQABAoIBAAJcN0UzH7GFR1mBu8pXt2hhcgPqIYbM2hLALtwO+ZDImjuYrgqcvZJxa17KciVBC748WVqAbnmfG4v+xTrK7/Utm0jYeQhHKKSPAgjdhHB3D4l6AjT5ehjXzxN8PVGzbu9OqT+QZvyHoxFenK7rFiPrvEi3ZWqJd58dpp6FmAX/NnutlQhnOUmkk6dq873sNuXP+oeDipEZIEQXIPpSTiATG2eJU/w+rqVvER04s1qfytOknINkEMVnB/jsDYHNaFPVeTNeXvVrYU6Ag56kD22lCaWUA/nh+CLJMR0VGP0Qq37zR8FeFKRcesQAa5eF83ceeSXLq3XCRqdbNF1oq4ECgYEAzdHFfu/KdocKnqJ0hvrfXe8GiISCdwscAepZRPwSgI0OuQn9bnhYPEZu9HJFjQEDu0LkXTCUf6XvQFTuSomCCfuo1uiBcuuE6HFv71Su5eJiTP0tkwleClVCXBPSXGRum5yQ4zGhis1t6Qh2Zw47sBd7YhZBzlCQ+mqUyGZzZjkCgYEAwnf82PWTX1v6P4rv2Uwg8807TwDpMuLkYIJILuyNkF/FSlX3GMwEbIxM/5Pt9z/jyDsfkKmAEwe8LK4mTQoOAptLWA1uAXSippqWzXpjtuq/X+Yd6jYhCjb93gJlK/wI/KH57j37ZEcdec1KPUjAfx9PvcbWYaogN1u9hkGyKkMCgYEAri3Ge2Qm7SPfYtyMzOZmPbJYzxOE7YWjUCOpJG5Goi+9s+62YNTLp0bcA1bpcSjYpZM4e3zvTw94Z/L4LnAscpJdEnJ1inGyapwFZH8//CAXnJvuA687vHbmz9Gehr4ftOVM4FhSI4syZrHYseIjtSRKMHoxeo5IAwRLoUTCiFECgYBRdivPwodacdARYCT61J4VIsqOXKZTL6JVHx4XsfXXHZcqfXpFw+iyg88ZXKFZakUDsmiVk7tXvWzBFq5qpSSbSOw11WJYb8BWo/k51+P/UrSZ+m5blxMeEU0k+8Hfu/MTyNJGT2aIahXZ2PoZU+l3FumzaKCTRs26As8Qd2KnuwKBgQCq6dgLTftulMRGV3RS7bvxYihMIq7O4Cwk23Con4mq+fzR3Mh3Gn0Gq5OkjZj4TqYfGlyuPKZGepFHdx6bQTRKSL58EKizZTs1RIMf24CoRo8AnvbS9y2UoheolVgeDJi2m3X/8g/LhmZoaCIPTCQ9bXf2MCX4mZ5K3DwlSYidNw==";

/// The shared secret of `hmac_jwk` (64 bytes: long enough for HS512).
pub const HMAC_SECRET: [u8; 64] = [0x5a; 64];

fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub fn rsa_keypair() -> ring::signature::RsaKeyPair {
    let der = STANDARD.decode(RSA_2048_PKCS1).unwrap();
    ring::signature::RsaKeyPair::from_der(&der).unwrap()
}

pub fn p256_signing_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_bytes(&[0x11u8; 32].into()).unwrap()
}

pub fn p384_signing_key() -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from_bytes(&[0x22u8; 48].into()).unwrap()
}

pub fn p521_signing_key() -> p521::ecdsa::SigningKey {
    p521::ecdsa::SigningKey::from_bytes(&[0x01u8; 66].into()).unwrap()
}

pub fn ed25519_keypair() -> ring::signature::Ed25519KeyPair {
    ring::signature::Ed25519KeyPair::from_seed_unchecked(&[0x33u8; 32]).unwrap()
}

/// The public JWK of the RSA test key. `bits` other than 2048 gives a made-up modulus of that
/// size (odd, top bit set) that only serves to test the size checks: nothing verifies under it.
pub fn rsa_jwk(kid: &str, bits: usize) -> String {
    let n = if bits == 2048 {
        let kp = rsa_keypair();
        let c: ring::rsa::PublicKeyComponents<Vec<u8>> = kp.public().into();
        c.n
    } else {
        let mut n = vec![0xc5u8; bits / 8];
        n[0] = 0xc5;
        n
    };
    format!(
        r#"{{"kty":"RSA","kid":"{kid}","n":"{}","e":"AQAB"}}"#,
        b64u(&n)
    )
}

/// An EC public JWK on curve `crv` from its point's affine coordinates.
fn ec_jwk(kid: &str, crv: &str, x: &[u8], y: &[u8]) -> String {
    format!(
        r#"{{"kty":"EC","kid":"{kid}","crv":"{crv}","x":"{}","y":"{}"}}"#,
        b64u(x),
        b64u(y)
    )
}

pub fn p256_jwk(kid: &str) -> String {
    let p = p256_signing_key().verifying_key().to_sec1_point(false);
    ec_jwk(kid, "P-256", p.x().unwrap(), p.y().unwrap())
}

pub fn p384_jwk(kid: &str) -> String {
    let p = p384_signing_key().verifying_key().to_sec1_point(false);
    ec_jwk(kid, "P-384", p.x().unwrap(), p.y().unwrap())
}

pub fn p521_jwk(kid: &str) -> String {
    let p = p521_signing_key().verifying_key().to_sec1_point(false);
    ec_jwk(kid, "P-521", p.x().unwrap(), p.y().unwrap())
}

pub fn ed25519_jwk(kid: &str) -> String {
    use ring::signature::KeyPair as _;
    let kp = ed25519_keypair();
    format!(
        r#"{{"kty":"OKP","kid":"{kid}","crv":"Ed25519","x":"{}"}}"#,
        b64u(kp.public_key().as_ref())
    )
}

pub fn hmac_jwk(kid: &str) -> String {
    format!(
        r#"{{"kty":"oct","kid":"{kid}","k":"{}"}}"#,
        b64u(&HMAC_SECRET)
    )
}

/// A JWKS holding one key of each family, with kids "rsa", "p256", "p384", "p521", "ed25519",
/// "hmac".
pub fn jwks_all() -> String {
    format!(
        r#"{{"keys":[{},{},{},{},{},{}]}}"#,
        rsa_jwk("rsa", 2048),
        p256_jwk("p256"),
        p384_jwk("p384"),
        p521_jwk("p521"),
        ed25519_jwk("ed25519"),
        hmac_jwk("hmac")
    )
}

/// The kid `jwks_all` gives the key for `alg`.
pub fn kid_for(alg: &str) -> &'static str {
    match alg {
        "HS256" | "HS384" | "HS512" => "hmac",
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "rsa",
        "ES256" => "p256",
        "ES384" => "p384",
        "ES512" => "p521",
        "EdDSA" => "ed25519",
        _ => panic!("no test key for {alg}"),
    }
}

/// The HMAC of `msg` under [`HMAC_SECRET`], with the hash of `M` (e.g. `Hmac<Sha256>`).
fn hmac_sign<M: hmac::Mac + hmac::digest::KeyInit>(msg: &[u8]) -> Vec<u8> {
    <M as hmac::Mac>::new_from_slice(&HMAC_SECRET)
        .unwrap()
        .chain_update(msg)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// The public JWK, under `kid`, of the test key that signs `alg` (the private half of
/// [`sign`]).
pub fn jwk_for(alg: &str, kid: &str) -> String {
    match kid_for(alg) {
        "hmac" => hmac_jwk(kid),
        "rsa" => rsa_jwk(kid, 2048),
        "p256" => p256_jwk(kid),
        "p384" => p384_jwk(kid),
        "p521" => p521_jwk(kid),
        "ed25519" => ed25519_jwk(kid),
        other => panic!("no test key named {other}"),
    }
}

/// Signs `msg` with the test key for the JWS algorithm `alg`, in JWS form (raw r||s for ECDSA).
pub fn sign(alg: &str, msg: &[u8]) -> Vec<u8> {
    use ring::signature as rs;
    let rsa = |pad: &'static dyn rs::RsaEncoding| {
        let kp = rsa_keypair();
        let mut sig = vec![0u8; kp.public().modulus_len()];
        kp.sign(pad, &ring::rand::SystemRandom::new(), msg, &mut sig)
            .unwrap();
        sig
    };
    match alg {
        "HS256" => hmac_sign::<hmac::Hmac<sha2::Sha256>>(msg),
        "HS384" => hmac_sign::<hmac::Hmac<sha2::Sha384>>(msg),
        "HS512" => hmac_sign::<hmac::Hmac<sha2::Sha512>>(msg),
        "RS256" => rsa(&rs::RSA_PKCS1_SHA256),
        "RS384" => rsa(&rs::RSA_PKCS1_SHA384),
        "RS512" => rsa(&rs::RSA_PKCS1_SHA512),
        "PS256" => rsa(&rs::RSA_PSS_SHA256),
        "PS384" => rsa(&rs::RSA_PSS_SHA384),
        "PS512" => rsa(&rs::RSA_PSS_SHA512),
        "ES256" => {
            let s: p256::ecdsa::Signature = p256_signing_key().sign(msg);
            s.to_bytes().to_vec()
        }
        "ES384" => {
            let s: p384::ecdsa::Signature = p384_signing_key().sign(msg);
            s.to_bytes().to_vec()
        }
        "ES512" => {
            let s: p521::ecdsa::Signature = p521_signing_key().sign(msg);
            s.to_bytes().to_vec()
        }
        "EdDSA" => ed25519_keypair().sign(msg).as_ref().to_vec(),
        _ => panic!("no test key for {alg}"),
    }
}

/// A compact JWS signed with the test key for `alg`, its header naming `kid` if given.
pub fn token(alg: &str, kid: Option<&str>, payload: &str) -> String {
    let header = match kid {
        Some(k) => format!(r#"{{"alg":"{alg}","kid":"{k}","typ":"JWT"}}"#),
        None => format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#),
    };
    let input = format!("{}.{}", b64u(header.as_bytes()), b64u(payload.as_bytes()));
    let sig = sign(alg, input.as_bytes());
    format!("{input}.{}", b64u(&sig))
}
