//! Small lexical rules shared by config validation and request parsing: hex digits, RFC 9110
//! `tchar`, and the short names (key ids, cookie and header names, tenants) limited to 64 bytes.

/// The longest short name (`kid`, cookie name, API-key header, tenant id) edgegate accepts.
pub(crate) const MAX_NAME_BYTES: usize = 64;

/// The value of one hex digit, either case.
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// 1 to [`MAX_NAME_BYTES`] bytes, each ASCII alphanumeric or one of `extra`.
pub(crate) fn is_short_name(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// 1 to [`MAX_NAME_BYTES`] RFC 9110 `tchar`s (cookie and header names).
pub(crate) fn is_short_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_BYTES && s.bytes().all(is_tchar)
}
