//! Strict base64url (RFC 4648 §5) without padding, as JWS requires (RFC 7515 §2).
//!
//! Refuses padding, the standard alphabet's `+` and `/`, whitespace, and non-canonical encodings
//! (stray low bits in the last character), so that one byte string has exactly one spelling.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::{Error, Reason};

/// Decodes a canonical unpadded base64url string.
pub fn decode(s: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| {
        Error::new(
            Reason::BadBase64,
            "a segment is not canonical unpadded base64url",
        )
    })
}

/// Encodes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_padding_std_alphabet_and_noncanonical() {
        assert_eq!(decode("YQ").unwrap(), b"a");
        for bad in ["YQ==", "YQ=", "a+b/", "YR", "Y Q", "YQ\n", "Y"] {
            assert_eq!(
                decode(bad).unwrap_err().reason(),
                Reason::BadBase64,
                "{bad:?}"
            );
        }
        assert_eq!(encode(b"\xfb\xff"), "-_8");
        assert_eq!(decode("-_8").unwrap(), b"\xfb\xff");
    }
}
