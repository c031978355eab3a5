//! The credential toolkit: the checks every signed credential shares, in one place. JWTs
//! ([`crate::verifier`]), ID tokens ([`crate::oidc`], [`crate::login`]), magic links
//! ([`crate::magic`]) and sessions ([`crate::session`]) use these instead of their own copies.
//!
//! - [`TimeWindow`]: `exp`, `nbf` and `iat` (NumericDates, [`crate::claims::NumericDate`])
//!   against `now` with clock skew, under each credential's [`WindowRules`].
//! - [`Audience`]: the `aud` claim (one string or an array) and whether it names an expected one.
//! - Key selection by `kid` is [`crate::jwk::KeySet::select`]; a provider's static-then-remote
//!   choice is [`crate::verifier::Provider::signing_key`].
//!
//! Each caller keeps its own wording: the toolkit decides which [`Fault`] a claim has, the caller
//! turns it into its [`Error`].

use serde_json::{Map, Value};

use crate::claims::NumericDate;
use crate::error::{Error, Reason};

/// Clock skew tolerated on edgegate's own tokens (magic links, sessions) between the instance
/// that issued them and the one checking them.
pub const OWN_TOKEN_SKEW_SECONDS: u64 = 60;

/// What is wrong with a credential's time claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A required claim (`exp`, or `iat` where required) is absent.
    Missing(&'static str),
    /// `exp` has passed (beyond its leeway).
    Expired,
    /// `nbf` is later than now plus the skew.
    NotYetValid,
    /// `iat` is later than now plus the skew.
    IssuedInFuture,
}

impl Fault {
    /// The reason every credential refuses this fault with.
    pub fn reason(self) -> Reason {
        match self {
            Fault::Missing(_) => Reason::MissingClaim,
            Fault::Expired => Reason::TokenExpired,
            Fault::NotYetValid => Reason::TokenNotYetValid,
            Fault::IssuedInFuture => Reason::IssuedInFuture,
        }
    }
}

/// How one kind of credential reads its time claims. `exp` is always required.
#[derive(Debug, Clone, Copy)]
pub struct WindowRules {
    /// Leeway after `exp`, in seconds.
    pub exp_skew: u64,
    /// Leeway before `nbf` and `iat`, in seconds.
    pub skew: u64,
    /// `iat` must be present.
    pub iat_required: bool,
    /// `nbf` is honoured when present (ID tokens do not look at it).
    pub check_nbf: bool,
}

impl WindowRules {
    /// One leeway for all three claims, `iat` and `nbf` optional and honoured (RFC 7519: JWTs).
    pub fn jwt(skew: u64) -> WindowRules {
        WindowRules {
            exp_skew: skew,
            skew,
            iat_required: false,
            check_nbf: true,
        }
    }
}

/// A credential's validity window as read from its claims.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeWindow {
    pub exp: NumericDate,
    /// `None` when absent or not checked ([`WindowRules::check_nbf`]).
    pub nbf: Option<NumericDate>,
    /// Present whenever [`WindowRules::iat_required`].
    pub iat: Option<NumericDate>,
}

impl TimeWindow {
    /// Reads and checks `exp`, then `nbf`, then `iat` against `now` (seconds, possibly
    /// fractional), each claim checked as soon as it is read, so the first bad claim in that
    /// order decides. A claim that is not a NumericDate is `MalformedClaims` (from the parser);
    /// anything else is the caller's `word`ing of the [`Fault`].
    pub fn check(
        claims: &Map<String, Value>,
        now: f64,
        rules: &WindowRules,
        word: impl Fn(Fault) -> Error,
    ) -> Result<TimeWindow, Error> {
        let exp = NumericDate::parse(claims, "exp")?.ok_or_else(|| word(Fault::Missing("exp")))?;
        if exp.reached(now, rules.exp_skew) {
            return Err(word(Fault::Expired));
        }
        let nbf = match rules.check_nbf {
            true => NumericDate::parse(claims, "nbf")?,
            false => None,
        };
        if nbf.is_some_and(|n| n.after(now, rules.skew)) {
            return Err(word(Fault::NotYetValid));
        }
        let iat = NumericDate::parse(claims, "iat")?;
        if rules.iat_required && iat.is_none() {
            return Err(word(Fault::Missing("iat")));
        }
        if iat.is_some_and(|i| i.after(now, rules.skew)) {
            return Err(word(Fault::IssuedInFuture));
        }
        Ok(TimeWindow { exp, nbf, iat })
    }

    /// `exp - iat` in seconds, when `iat` is known.
    pub fn lifetime(&self) -> Option<f64> {
        self.iat.map(|iat| self.exp.since(iat))
    }
}

/// A credential's `aud` claim (RFC 7519 §4.1.3): one string, or an array whose string members
/// count (other members are ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience<'c> {
    Missing,
    /// Present but neither a string nor an array.
    NotStrings,
    Names(Vec<&'c str>),
}

impl<'c> Audience<'c> {
    /// Reads `aud` from `claims`.
    pub fn of(claims: &'c Map<String, Value>) -> Audience<'c> {
        match claims.get("aud") {
            None => Audience::Missing,
            Some(Value::String(s)) => Audience::Names(vec![s.as_str()]),
            Some(Value::Array(list)) => {
                Audience::Names(list.iter().filter_map(Value::as_str).collect())
            }
            Some(_) => Audience::NotStrings,
        }
    }

    /// True when the claim names one of `expected` (never when missing or malformed).
    pub fn matches<S: AsRef<str>>(&self, expected: &[S]) -> bool {
        match self {
            Audience::Names(names) => audience_matches(names, expected),
            _ => false,
        }
    }
}

/// True when one of the token's audiences `claims_aud` is one of `expected`.
pub fn audience_matches<S: AsRef<str>>(claims_aud: &[&str], expected: &[S]) -> bool {
    claims_aud
        .iter()
        .any(|a| expected.iter().any(|e| e.as_ref() == *a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn reason(c: &Value, now: f64, rules: &WindowRules) -> Reason {
        TimeWindow::check(&claims(c.clone()), now, rules, |f| {
            Error::new(f.reason(), "x")
        })
        .unwrap_err()
        .reason()
    }

    #[test]
    fn rules_decide_leeway_required_iat_and_nbf() {
        let magic = WindowRules {
            exp_skew: 0,
            skew: 60,
            iat_required: true,
            check_nbf: true,
        };
        let id_token = WindowRules {
            exp_skew: 60,
            skew: 60,
            iat_required: true,
            check_nbf: false,
        };
        let c = json!({"exp": 1000, "iat": 900, "nbf": 1100});
        assert_eq!(reason(&c, 1000.0, &magic), Reason::TokenExpired);
        assert_eq!(
            reason(&c, 1030.0, &WindowRules::jwt(60)),
            Reason::TokenNotYetValid
        );
        // ID tokens ignore nbf
        let w = TimeWindow::check(&claims(c), 1030.0, &id_token, |f| {
            Error::new(f.reason(), "x")
        })
        .unwrap();
        assert_eq!(w.nbf, None);
        assert_eq!(w.lifetime(), Some(100.0));
        let no_iat = json!({"exp": 2000});
        assert_eq!(reason(&no_iat, 1000.0, &magic), Reason::MissingClaim);
        assert!(
            TimeWindow::check(&claims(no_iat), 1000.0, &WindowRules::jwt(0), |f| {
                Error::new(f.reason(), "x")
            })
            .is_ok()
        );
        assert_eq!(
            reason(&json!({"exp": 2000, "iat": 1061}), 1000.0, &magic),
            Reason::IssuedInFuture
        );
        // the first bad claim in exp, nbf, iat order decides
        assert_eq!(
            reason(&json!({"exp": 10, "iat": "x"}), 1000.0, &magic),
            Reason::TokenExpired
        );
        assert_eq!(
            reason(&json!({"exp": 2000, "iat": "x"}), 1000.0, &magic),
            Reason::MalformedClaims
        );
    }

    #[test]
    fn audience_is_a_string_or_an_array_of_them() {
        let of = |v: Value| claims(json!({ "aud": v }));
        let c = of(json!("a"));
        assert!(Audience::of(&c).matches(&["b", "a"]));
        let c = of(json!([5, "x", "a"]));
        assert!(Audience::of(&c).matches(&["a".to_string()]));
        assert!(!Audience::of(&c).matches(&["b"]));
        let c = of(json!(5));
        assert_eq!(Audience::of(&c), Audience::NotStrings);
        assert!(!Audience::of(&c).matches(&["5"]));
        let c = claims(json!({}));
        assert_eq!(Audience::of(&c), Audience::Missing);
        assert!(!audience_matches::<&str>(&["a"], &[]));
    }
}
