//! OpenID Connect relying party (authorization code flow with PKCE), sans-IO.
//!
//! The host does the I/O (discovery and token requests, cookies, randomness); this module holds
//! the protocol decisions, so every host logs people in the same way:
//!
//! - [`start_login`]: `state`, `nonce` and a PKCE S256 verifier from 64 random bytes the host
//!   supplies, the authorization URL, and a short-lived HS256-signed cookie named per attempt
//!   (`edgegate_login_<state>`), so two tabs logging in at once both succeed;
//! - [`parse_callback`] and [`open_attempt`]: the callback's `code`, `state` (compared in
//!   constant time with the cookie's) and RFC 9207 `iss` when sent;
//! - [`check_id_token_claims`]: OpenID Connect Core 3.1.3.7 on an ID token whose signature the
//!   host already checked with the issuer's keys: `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`,
//!   `sub`, and `at_hash` when present.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use crate::alg::Alg;
use crate::b64;
use crate::claims::NumericDate;
use crate::credential::{audience_matches, Audience, Fault, TimeWindow, WindowRules};
use crate::error::{Error, Reason};
use crate::keyring::KeyRing;
use crate::UnixTime;

/// Login-attempt cookies are named this prefix followed by the attempt's `state`.
pub const ATTEMPT_COOKIE_PREFIX: &str = "edgegate_login_";
/// How long a login attempt (and its cookie) lives, in seconds.
pub const ATTEMPT_LIFETIME_SECONDS: u64 = 600;
/// Random bytes [`start_login`] needs: 16 for `state`, 16 for `nonce`, 32 for the PKCE verifier.
pub const LOGIN_RANDOM_BYTES: usize = 64;
/// The `aud` of an attempt cookie, so no other edgegate token can stand in for one.
const ATTEMPT_AUDIENCE: &str = "edgegate-login";
/// Largest attempt cookie accepted.
const MAX_ATTEMPT_BYTES: usize = 4096;

/// The client's side of the authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizationParams<'a> {
    /// From the provider's discovery document.
    pub authorization_endpoint: &'a str,
    pub client_id: &'a str,
    /// This host's `/auth/callback` as an absolute URL.
    pub redirect_uri: &'a str,
    /// Space-separated; must include `openid`.
    pub scope: &'a str,
}

/// What the host sends for `GET /auth/login`: a 302 to `location` with `set_cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStart {
    pub location: String,
    /// A `Set-Cookie` header value (HttpOnly, Secure, SameSite=Lax, Path=/, Max-Age).
    pub set_cookie: String,
    pub state: String,
}

/// What the callback needs from the attempt cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub nonce: String,
    /// The PKCE `code_verifier` for the token request.
    pub verifier: String,
    /// Where to send the user after login (already checked by the host's redirect policy
    /// before [`start_login`]).
    pub return_to: String,
}

#[derive(Serialize, Deserialize)]
struct AttemptClaims {
    aud: String,
    st: String,
    n: String,
    v: String,
    rd: String,
    iat: UnixTime,
    exp: UnixTime,
}

/// RFC 7636 S256: `BASE64URL(SHA256(ASCII(code_verifier)))`.
pub fn pkce_s256(verifier: &str) -> String {
    b64::encode(Sha256::digest(verifier.as_bytes()))
}

/// Starts a login: the authorization URL and the signed attempt cookie. `random` must come
/// from a CSPRNG; `return_to` must already have passed the redirect policy.
pub fn start_login(
    ring: &KeyRing,
    params: &AuthorizationParams<'_>,
    random: &[u8; LOGIN_RANDOM_BYTES],
    return_to: &str,
    now: UnixTime,
) -> Result<LoginStart, Error> {
    let (state, rest) = random.split_at(16);
    let (nonce, verifier) = rest.split_at(16);
    let state = b64::encode(state);
    let nonce = b64::encode(nonce);
    let verifier = b64::encode(verifier);
    let claims = AttemptClaims {
        aud: ATTEMPT_AUDIENCE.into(),
        st: state.clone(),
        n: nonce.clone(),
        v: verifier.clone(),
        rd: return_to.into(),
        iat: now,
        exp: now.saturating_add(ATTEMPT_LIFETIME_SECONDS),
    };
    let json = serde_json::to_vec(&claims)
        .map_err(|_| Error::new(Reason::Internal, "could not encode the login attempt"))?;
    let cookie = ring.sign(&json)?;
    let sep = if params.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", params.client_id)
        .append_pair("redirect_uri", params.redirect_uri)
        .append_pair("scope", params.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .finish();
    Ok(LoginStart {
        location: format!("{}{sep}{query}", params.authorization_endpoint),
        set_cookie: format!(
            "{ATTEMPT_COOKIE_PREFIX}{state}={cookie}; Path=/; Max-Age={ATTEMPT_LIFETIME_SECONDS}; HttpOnly; Secure; SameSite=Lax"
        ),
        state,
    })
}

/// The parameters of a callback (`/auth/callback?code=…&state=…[&iss=…]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub code: String,
    pub state: String,
    /// RFC 9207: when present it must equal the provider's issuer exactly.
    pub iss: Option<String>,
}

/// Parses a callback query. An `error` from the provider, or a missing `code`/`state`, is a
/// refusal (the provider's error code is kept, its free-text description is not).
pub fn parse_callback(query: &str) -> Result<Callback, Error> {
    let mut code = None;
    let mut state = None;
    let mut iss = None;
    let mut error = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*k {
            "code" => &mut code,
            "state" => &mut state,
            "iss" => &mut iss,
            "error" => &mut error,
            _ => continue,
        };
        if slot.is_some() {
            return Err(Error::new(
                Reason::LoginMismatch,
                format!("the callback repeats `{k}`"),
            ));
        }
        *slot = Some(v.into_owned());
    }
    if let Some(e) = error {
        let safe: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(Error::new(
            Reason::LoginMismatch,
            format!("the identity provider refused the login: {safe}"),
        ));
    }
    match (code, state) {
        (Some(code), Some(state)) if !code.is_empty() && !state.is_empty() => {
            Ok(Callback { code, state, iss })
        }
        _ => Err(Error::new(
            Reason::LoginMismatch,
            "the callback lacks `code` or `state`",
        )),
    }
}

/// The name of the attempt cookie for a callback's `state`.
pub fn attempt_cookie_name(state: &str) -> String {
    format!("{ATTEMPT_COOKIE_PREFIX}{state}")
}

/// Opens the attempt cookie found under [`attempt_cookie_name`]`(callback.state)`: its
/// signature, audience, expiry, and its `state` equal to the callback's (constant time); and
/// the callback's `iss`, when sent, equal to `issuer`.
pub fn open_attempt(
    ring: &KeyRing,
    cookie: &str,
    callback: &Callback,
    issuer: &str,
    now: UnixTime,
) -> Result<Attempt, Error> {
    if let Some(iss) = &callback.iss {
        if iss != issuer {
            return Err(Error::new(
                Reason::UnknownIssuer,
                "the callback's `iss` is not the provider's issuer (RFC 9207)",
            ));
        }
    }
    let (jws, _) = ring.verify(cookie, MAX_ATTEMPT_BYTES)?;
    let claims: AttemptClaims = serde_json::from_slice(&jws.payload).map_err(|_| {
        Error::new(
            Reason::MalformedClaims,
            "the login attempt cookie is malformed",
        )
    })?;
    if claims.aud != ATTEMPT_AUDIENCE {
        return Err(Error::new(
            Reason::WrongAudience,
            "not a login attempt cookie",
        ));
    }
    if now >= claims.exp {
        return Err(Error::new(
            Reason::TokenExpired,
            "the login attempt expired; start again",
        ));
    }
    if !bool::from(claims.st.as_bytes().ct_eq(callback.state.as_bytes())) {
        return Err(Error::new(
            Reason::LoginMismatch,
            "the callback's state does not match the login attempt",
        ));
    }
    Ok(Attempt {
        nonce: claims.n,
        verifier: claims.v,
        return_to: claims.rd,
    })
}

/// What an ID token must say (OpenID Connect Core 3.1.3.7).
#[derive(Debug, Clone)]
pub struct IdTokenExpectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The attempt's nonce.
    pub nonce: &'a str,
    pub clock_skew_seconds: u64,
    /// `iat` older than this is refused (a stale token replayed into a fresh login).
    pub max_age_seconds: u64,
}

/// Checks the claims of an ID token whose signature (by the issuer's key, with an algorithm the
/// provider allows) the host has verified. `alg` is the token's; `access_token` is the one from
/// the same token response, to check `at_hash` when the token carries one.
pub fn check_id_token_claims(
    claims: &Map<String, Value>,
    alg: Alg,
    expect: &IdTokenExpectations<'_>,
    access_token: Option<&str>,
    now: UnixTime,
) -> Result<(), Error> {
    let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);
    // 2. iss must match exactly
    if str_claim("iss").ok_or_else(|| missing_claim("iss"))? != expect.issuer {
        return Err(Error::new(
            Reason::UnknownIssuer,
            "the ID token's `iss` is not the provider's issuer",
        ));
    }
    // 3.-5. aud and azp
    check_id_token_audience(claims, expect.client_id)?;
    if !str_claim("sub").is_some_and(|s| !s.is_empty()) {
        return Err(missing_claim("sub"));
    }
    // 9. exp; 10. iat
    check_id_token_age(claims, expect, now)?;
    // 11. nonce
    let nonce = str_claim("nonce").ok_or_else(|| missing_claim("nonce"))?;
    if !bool::from(nonce.as_bytes().ct_eq(expect.nonce.as_bytes())) {
        return Err(Error::new(
            Reason::LoginMismatch,
            "the ID token's nonce is not this login's",
        ));
    }
    // 3.1.3.8: at_hash, when present
    if let (Some(at_hash), Some(token)) = (str_claim("at_hash"), access_token) {
        let expected = token_hash(alg, token);
        if !bool::from(at_hash.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(Error::new(
                Reason::LoginMismatch,
                "the ID token's at_hash does not match the access token",
            ));
        }
    }
    Ok(())
}

fn missing_claim(name: &str) -> Error {
    Error::new(
        Reason::MissingClaim,
        format!("the ID token has no `{name}`"),
    )
}

/// 3.-5.: `aud` contains the client id; `azp`, when present, is the client; several audiences
/// need `azp`.
fn check_id_token_audience(claims: &Map<String, Value>, client_id: &str) -> Result<(), Error> {
    let auds = match Audience::of(claims) {
        Audience::Names(names) => names,
        _ => return Err(missing_claim("aud")),
    };
    if !audience_matches(&auds, &[client_id]) {
        return Err(Error::new(
            Reason::WrongAudience,
            "the ID token is not for this client",
        ));
    }
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => Err(Error::new(
            Reason::WrongAudience,
            "the ID token's `azp` is another client",
        )),
        None if auds.len() > 1 => Err(Error::new(
            Reason::WrongAudience,
            "an ID token with several audiences needs `azp`",
        )),
        _ => Ok(()),
    }
}

/// 9.-10.: `exp` not past, `iat` required, not in the future, and recent enough for a fresh
/// login.
fn check_id_token_age(
    claims: &Map<String, Value>,
    expect: &IdTokenExpectations<'_>,
    now: UnixTime,
) -> Result<(), Error> {
    let now_f = now as f64;
    let rules = WindowRules {
        iat_required: true,
        check_nbf: false,
        ..WindowRules::jwt(expect.clock_skew_seconds)
    };
    let window = TimeWindow::check(claims, now_f, &rules, |fault| match fault {
        Fault::Missing(name) => missing_claim(name),
        Fault::Expired => Error::new(fault.reason(), "the ID token has expired"),
        _ => Error::new(fault.reason(), "the ID token is issued in the future"),
    })?;
    let issued = window.iat.map_or(now_f, NumericDate::seconds);
    if now_f > issued + expect.max_age_seconds as f64 {
        return Err(Error::new(
            Reason::TokenExpired,
            "the ID token was issued too long ago for a fresh login",
        ));
    }
    Ok(())
}

/// `at_hash`/`c_hash`: the left half of the token's hash with the JWS algorithm's hash,
/// base64url (Ed25519 uses SHA-512).
pub fn token_hash(alg: Alg, token: &str) -> String {
    let digest: Vec<u8> = match alg.name() {
        a if a.ends_with("384") => Sha384::digest(token.as_bytes()).to_vec(),
        a if a.ends_with("512") || a == "EdDSA" => Sha512::digest(token.as_bytes()).to_vec(),
        _ => Sha256::digest(token.as_bytes()).to_vec(),
    };
    let half = digest.get(..digest.len() / 2).unwrap_or(&[]);
    b64::encode(half)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::HmacKeyConfig;
    use crate::test_support::{with_claim, WRONG_AT_HASH};
    use serde_json::json;

    fn ring() -> KeyRing {
        let cfg: Vec<HmacKeyConfig> = serde_json::from_value(json!([
            {"kid": "s1", "secret": "jwoaIj8MA4uqORbygI3Aqi_UBO4gJmB9oGyzqIjWUPI"}
        ]))
        .unwrap();
        KeyRing::compile(&cfg).unwrap()
    }

    const PARAMS: AuthorizationParams<'static> = AuthorizationParams {
        authorization_endpoint: "https://idp.example/auth",
        client_id: "desk",
        redirect_uri: "https://desk.example.com/auth/callback",
        scope: "openid email",
    };

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core, Appendix A.3
        assert_eq!(
            token_hash(Alg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    fn start(random: u8) -> LoginStart {
        start_login(&ring(), &PARAMS, &[random; 64], "/admin", 1000).unwrap()
    }

    fn query_of(location: &str) -> Vec<(String, String)> {
        let q = location.split_once('?').unwrap().1;
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn cookie_of(s: &LoginStart) -> (String, String) {
        let pair = s.set_cookie.split(';').next().unwrap();
        let (n, v) = pair.split_once('=').unwrap();
        (n.to_string(), v.to_string())
    }

    #[test]
    fn login_url_carries_state_nonce_and_s256_challenge() {
        let s = start(7);
        let q = query_of(&s.location);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert!(s.location.starts_with("https://idp.example/auth?"));
        assert_eq!(get("response_type").as_deref(), Some("code"));
        assert_eq!(get("client_id").as_deref(), Some("desk"));
        assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
        assert_eq!(get("state").as_deref(), Some(s.state.as_str()));
        let (name, value) = cookie_of(&s);
        assert_eq!(name, attempt_cookie_name(&s.state));
        assert!(s.set_cookie.contains("HttpOnly"));
        assert!(s.set_cookie.contains("Secure"));
        assert!(s.set_cookie.contains("SameSite=Lax"));
        let cb = Callback {
            code: "c".into(),
            state: s.state.clone(),
            iss: None,
        };
        let a = open_attempt(&ring(), &value, &cb, "https://idp.example", 1001).unwrap();
        assert_eq!(get("nonce").unwrap(), a.nonce);
        assert_eq!(get("code_challenge").unwrap(), pkce_s256(&a.verifier));
        assert_eq!(a.return_to, "/admin");
        assert!(a.verifier.len() >= 43);
    }

    #[test]
    fn two_attempts_have_their_own_cookies() {
        let (a, b) = (start(1), start(2));
        assert_ne!(a.state, b.state);
        assert_ne!(cookie_of(&a).0, cookie_of(&b).0);
    }

    #[test]
    fn attempt_refusals() {
        let s = start(3);
        let (_, value) = cookie_of(&s);
        let cb = |state: &str, iss: Option<&str>| Callback {
            code: "c".into(),
            state: state.into(),
            iss: iss.map(str::to_string),
        };
        let r = ring();
        let iss = "https://idp.example";
        let other = start(4).state;
        assert_eq!(
            open_attempt(&r, &value, &cb(&other, None), iss, 1001)
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        assert_eq!(
            open_attempt(&r, &value, &cb(&s.state, Some("https://evil")), iss, 1001)
                .unwrap_err()
                .reason(),
            Reason::UnknownIssuer
        );
        assert!(open_attempt(&r, &value, &cb(&s.state, Some(iss)), iss, 1001).is_ok());
        assert_eq!(
            open_attempt(&r, &value, &cb(&s.state, None), iss, 1000 + 600)
                .unwrap_err()
                .reason(),
            Reason::TokenExpired
        );
        let mut forged = value.clone();
        forged.pop();
        forged.push(if value.ends_with('A') { 'B' } else { 'A' });
        assert!(open_attempt(&r, &forged, &cb(&s.state, None), iss, 1001).is_err());
        // another edgegate token signed by the same ring is not an attempt
        let session_like = r.sign(br#"{"aud":"edgegate-session","exp":5000}"#).unwrap();
        assert!(open_attempt(&r, &session_like, &cb(&s.state, None), iss, 1001).is_err());
    }

    #[test]
    fn callback_parsing() {
        let c = parse_callback("code=abc&state=xyz&iss=https%3A%2F%2Fidp").unwrap();
        assert_eq!(c.code, "abc");
        assert_eq!(c.iss.as_deref(), Some("https://idp"));
        for bad in [
            "state=xyz",
            "code=abc",
            "code=&state=x",
            "code=a&state=x&state=y",
            "error=access_denied&state=x",
        ] {
            assert_eq!(
                parse_callback(bad).unwrap_err().reason(),
                Reason::LoginMismatch,
                "{bad}"
            );
        }
        let e = parse_callback("error=access_denied<script>&state=x").unwrap_err();
        assert!(!e.message().contains('<'));
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn good() -> Value {
        json!({"iss": "https://idp.example", "aud": "desk", "sub": "u1", "exp": 2000,
               "iat": 1000, "nonce": "n1",
               "at_hash": token_hash(Alg::RS256, "access")})
    }

    const EXPECT: IdTokenExpectations<'static> = IdTokenExpectations {
        issuer: "https://idp.example",
        client_id: "desk",
        nonce: "n1",
        clock_skew_seconds: 60,
        max_age_seconds: 600,
    };

    fn check(v: Value) -> Result<(), Error> {
        check_id_token_claims(&claims(v), Alg::RS256, &EXPECT, Some("access"), 1010)
    }

    #[test]
    fn a_good_id_token_passes() {
        check(good()).unwrap();
        let mut v = good();
        v["aud"] = json!(["desk", "other"]);
        v["azp"] = json!("desk");
        check(v).unwrap();
        let mut v = good();
        v.as_object_mut().unwrap().remove("at_hash");
        check(v).unwrap();
    }

    #[test]
    fn id_token_refusals() {
        let cases: Vec<(&str, Value, Reason)> = vec![
            ("iss", json!("https://evil"), Reason::UnknownIssuer),
            ("aud", json!("other"), Reason::WrongAudience),
            ("aud", json!(["other", "desk"]), Reason::WrongAudience), // no azp
            ("azp", json!("other"), Reason::WrongAudience),
            ("sub", json!(""), Reason::MissingClaim),
            ("exp", json!(900), Reason::TokenExpired),
            ("iat", json!(5000), Reason::IssuedInFuture),
            ("iat", json!(100), Reason::TokenExpired),
            ("nonce", json!("n2"), Reason::LoginMismatch),
            ("at_hash", json!(WRONG_AT_HASH), Reason::LoginMismatch),
        ];
        for (field, value, reason) in cases {
            let v = with_claim(good(), field, &value);
            assert_eq!(check(v).unwrap_err().reason(), reason, "{field}={value}");
        }
        for field in ["iss", "aud", "sub", "exp", "iat", "nonce"] {
            let mut v = good();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(
                check(v).unwrap_err().reason(),
                Reason::MissingClaim,
                "{field}"
            );
        }
    }

    #[test]
    fn token_hash_uses_the_algorithms_hash() {
        assert_eq!(token_hash(Alg::RS256, "x").len(), 22); // 16 bytes
        assert_eq!(token_hash(Alg::ES384, "x").len(), 32); // 24 bytes
        assert_eq!(token_hash(Alg::RS512, "x").len(), 43); // 32 bytes
    }
}
