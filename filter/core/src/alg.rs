//! JWS algorithms the core implements (RFC 7518, RFC 8037).

use crate::error::{Error, Reason};

/// A JWS `alg` the core can verify. Anything else is refused with a reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(serde::Serialize, serde::Deserialize)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

/// The family of key an algorithm needs; a token's `alg` must agree with its key's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// Shared secret (`kty: oct`).
    Hmac,
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    P256,
    /// `kty: EC`, `crv: P-384`.
    P384,
    /// `kty: EC`, `crv: P-521`.
    P521,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

impl Alg {
    pub const ALL: [Alg; 13] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    /// The registered name, exactly as it appears in a JWS header.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Parses a header `alg`. Names are case-sensitive (RFC 7515 §4.1.1), so `rs256` is unsupported,
    /// but `none` is recognised in any casing and gets its own reason.
    pub fn from_header(name: &str) -> Result<Alg, Error> {
        if name.eq_ignore_ascii_case("none") {
            return Err(Error::new(
                Reason::AlgNone,
                "unsigned tokens (alg none) are never accepted",
            ));
        }
        Alg::ALL
            .iter()
            .copied()
            .find(|a| a.name() == name)
            .ok_or_else(|| Error::new(Reason::AlgUnsupported, "the token's alg is not supported"))
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyFamily::Hmac,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyFamily::Rsa
            }
            Alg::ES256 => KeyFamily::P256,
            Alg::ES384 => KeyFamily::P384,
            Alg::ES512 => KeyFamily::P521,
            Alg::EdDSA => KeyFamily::Ed25519,
        }
    }

    pub fn is_symmetric(self) -> bool {
        self.family() == KeyFamily::Hmac
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_in_any_casing_is_its_own_reason() {
        for n in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(Alg::from_header(n).unwrap_err().reason(), Reason::AlgNone);
        }
        assert_eq!(
            Alg::from_header("rs256").unwrap_err().reason(),
            Reason::AlgUnsupported
        );
        assert_eq!(
            Alg::from_header("ES256K").unwrap_err().reason(),
            Reason::AlgUnsupported
        );
        assert_eq!(Alg::from_header("ES512").unwrap(), Alg::ES512);
        for a in Alg::ALL {
            assert_eq!(Alg::from_header(a.name()).unwrap(), a);
        }
    }
}
