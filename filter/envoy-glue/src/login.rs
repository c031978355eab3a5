//! The I/O of the core's login machine over Envoy, shared by both packagings: the calls to the
//! IdP it asks for (cluster, headers), and what their answers mean to it. Each packaging makes
//! the call with its own ABI (`dispatch_http_call`, a stream's HTTP callout).

use edgegate::login::{Discovery, MAX_RESPONSE_BYTES};
use edgegate::{Engine, Error, Reason};

/// A call to the IdP that the login machine asks for (discovery, the token endpoint), as Envoy
/// makes it.
#[derive(Debug)]
pub struct IdpCall<'a> {
    /// `login.cluster`, else the cluster named after the URL's authority (as for key sets).
    pub cluster: String,
    /// The pseudo-headers, `user-agent`, `accept: application/json` unless the machine set an
    /// `accept`, then the machine's headers.
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> IdpCall<'a> {
    pub fn new(
        engine: &Engine,
        method: &'a str,
        url: &'a str,
        headers: &'a [(String, String)],
    ) -> IdpCall<'a> {
        let (authority, path) = edgegate::jwks::authority_and_path(url);
        let cluster = engine
            .login()
            .and_then(|l| l.cluster())
            .unwrap_or(authority)
            .to_string();
        let mut all: Vec<(&str, &str)> = vec![
            (":method", method),
            (":path", path),
            (":authority", authority),
            ("user-agent", "edgegate"),
        ];
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
        {
            all.push(("accept", "application/json"));
        }
        all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        IdpCall {
            cluster,
            headers: all,
        }
    }

    /// Why the call could not start, for the log (`detail` names the host's status).
    pub fn refused(&self, detail: &str) -> String {
        crate::fetch::refused(&self.cluster, detail, "login.cluster")
    }
}

/// What a call's response is to the login machine: its status and body, or why there is none
/// (`status` None: no response; a body over [`MAX_RESPONSE_BYTES`]: refused). Read at most one
/// byte past the limit.
pub fn answer(status: Option<u16>, body: &[u8]) -> Result<(u16, &[u8]), String> {
    match status {
        Some(s) if body.len() <= MAX_RESPONSE_BYTES => Ok((s, body)),
        Some(_) => Err("the response is too large".to_string()),
        None => Err("no response (connection failed or timed out)".to_string()),
    }
}

/// The discovery document of a discovery call's `answer` (the core checks it), or why not.
pub fn discovery(
    engine: &Engine,
    answer: Result<(u16, &[u8]), String>,
) -> Result<Discovery, Error> {
    match (engine.login(), answer) {
        (Some(l), Ok((s, b))) => l.parse_discovery(s, b),
        (Some(l), Err(why)) => Err(l.discovery_unreachable(&why)),
        (None, _) => Err(Error::new(Reason::Internal, "no login section")),
    }
}
