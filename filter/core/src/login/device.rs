//! Device authorization (RFC 8628) brokered by edgegate, sans-IO: a device without a browser
//! gets a code, the user confirms it in a browser after logging in through the `login` flow,
//! and the device receives an edgegate credential carrying that user's identity.
//!
//! Routes (`login.device.path`, default `/auth/device`):
//! - `POST <path>/code` → `device_code`, `user_code`, `verification_uri`,
//!   `verification_uri_complete`, `expires_in`, `interval` (RFC 8628 §3.2);
//! - `GET <path>[?user_code=…]` → the form (a browser without a session goes through
//!   `login_path` first and comes back), then a confirm page naming the request;
//!   `POST <path>` (form: `user_code`, `csrf`, `action=approve|deny`) approves or denies;
//! - `POST <path>/token` (`grant_type=urn:ietf:params:oauth:grant-type:device_code`,
//!   `device_code`) → `authorization_pending`, `slow_down`, `access_denied`, `expired_token`,
//!   `invalid_grant`, or the credential (RFC 8628 §3.5).
//!
//! **The credential** is a session of the confirming user (the session cookie's own signed
//! format, [`crate::session`]), sealed for at most `token_ttl_s` and never beyond the confirming
//! session's expiry, and presented as `Authorization: Bearer egs_<value>`. So the rules need
//! nothing new: a rule that accepts `session` accepts it, with the user's roles; it is
//! revoked like every session (rotate `session.keys`), and no other edgegate host state is
//! involved in checking it. It is handed out once (the record goes to `delivered`).
//!
//! **State**: the core cannot store, so the flow asks the host to [`DeviceStep::Read`] a record
//! and to [`DeviceStep::Write`] one by compare-and-set: `expect: None` creates it only if
//! absent, `Some(v)` replaces it only if its version is still `v`; the host answers whether the
//! write happened. That is what a Durable Object (one event at a time) and proxy-wasm shared
//! data (`get_shared_data`'s `cas`) do. Records may be forgotten after their `expires_at`.
//! Keys: `edgegate-device:<user code>` (one per flow) and `edgegate-device-guesses:<who>`
//! (wrong-code counters: one per user, `*` for everyone).
//!
//! Hosts: the worker keeps records in its `DEVICE_GRANTS` Durable Object (one object per key);
//! the Envoy wasm filter in shared data, in buckets created at configure (proxy-wasm's
//! `set_shared_data` without a `cas` is unconditional, so "create if absent" is checked inside a
//! compare-and-set of the bucket); the native module in process memory under a lock. Envoy's
//! are per node (see the recipe).
//!
//! **User codes**: 8 letters of `BCDFGHJKLMNPQRSTVWXZ` (no vowels, no look-alikes; RFC 8628
//! §6.1), shown as `XXXX-XXXX`, read case-, space- and dash-insensitively; 20⁸ ≈ 2.6·10¹⁰ codes.
//! Wrong entries are counted per logged-in user and overall within a `code_ttl_s` window and
//! refused (429) beyond `max_wrong_codes_per_user` / `max_wrong_codes`: each entry takes its slot
//! on both counters by compare-and-set before the record is read (a right code gives them back),
//! so entries sent at once cannot all pass a check made before any was counted. A user code is
//! single use: once approved or denied its record cannot be confirmed again, and it cannot be
//! issued again while the record lives. The `device_code` is `<user code>.<32 random bytes>`: the
//! store keeps only the SHA-256 of the random part, compared in constant time.
//!
//! **Binding**: the confirm page's `POST` carries a token signed with the session keys that
//! names the user code and the SHA-256 of the session cookie that saw the page: another
//! session (or a cross-site form) cannot approve, and the credential is the identity of the
//! session that approved.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::device_config::{Device, DeviceRoute};
use super::flow::LoginReply;
use super::Login;
use crate::b64;
use crate::engine::{html_escape, Engine, MAX_FORM_BODY};
use crate::extractor::Request;
use crate::identity::Identity;
use crate::session::Session;
use crate::UnixTime;

/// Random bytes a host passes to [`Engine::device`]: 32 for the device code's secret, 8 for
/// each of three user-code candidates (a collision with a live code takes the next).
pub const DEVICE_RANDOM_BYTES: usize = 64;
/// The prefix of a device credential in `Authorization: Bearer`.
pub const BEARER_PREFIX: &str = "egs_";
/// The user-code alphabet (RFC 8628 §6.1: no vowels, no ambiguous characters).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// The `grant_type` of a device's token request.
pub const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

const USER_CODE_LEN: usize = 8;
const RECORD_PREFIX: &str = "edgegate-device:";
const GUESS_PREFIX: &str = "edgegate-device-guesses:";
const CONFIRM_AUDIENCE: &str = "edgegate-device-confirm";
/// How often a write that lost a race is retried on a fresh read.
const RETRIES: u8 = 4;
/// RFC 8628 §3.5: `slow_down` adds 5 seconds to the interval.
const SLOW_DOWN_SECONDS: u64 = 5;
const MAX_CLIENT_NAME: usize = 64;
/// The form fields the device routes read; each may be sent once.
const FORM_FIELDS: [&str; 6] = [
    "client_id",
    "grant_type",
    "device_code",
    "user_code",
    "csrf",
    "action",
];

/// A record as the host's store holds it: the value the core wrote and the store's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub value: String,
    pub version: u64,
}

/// What the device flow needs next.
#[derive(Debug)]
pub enum DeviceStep {
    /// Send this reply; the flow is over.
    Reply(LoginReply),
    /// Read the record [`DeviceRead::key`] and resume with it (`None`: absent or expired).
    Read(DeviceRead),
    /// Write [`DeviceWrite::value`] at [`DeviceWrite::key`] by compare-and-set and resume with
    /// whether it was written.
    Write(DeviceWrite),
}

/// Paused for a read.
#[derive(Debug)]
pub struct DeviceRead(Box<Machine>, String);

/// Paused for a compare-and-set write.
#[derive(Debug)]
pub struct DeviceWrite(Box<Machine>, Write);

#[derive(Debug, Clone)]
struct Write {
    key: String,
    value: String,
    expect: Option<u64>,
    expires_at: UnixTime,
}

impl DeviceRead {
    /// The record's key (ASCII, at most 80 bytes).
    pub fn key(&self) -> &str {
        &self.1
    }

    /// Resumes with the record read (`None`: there is none, or it expired).
    pub fn resume(self, engine: &Engine, found: Option<Stored>, now: UnixTime) -> DeviceStep {
        self.0.on_read(engine, found, now)
    }
}

impl DeviceWrite {
    /// The record's key.
    pub fn key(&self) -> &str {
        &self.1.key
    }
    /// The value to store.
    pub fn value(&self) -> &str {
        &self.1.value
    }
    /// `None`: create only if there is no (live) record; `Some(v)`: replace only if the
    /// record's version is still `v`.
    pub fn expect(&self) -> Option<u64> {
        self.1.expect
    }
    /// When the host may forget the record (Unix seconds).
    pub fn expires_at(&self) -> UnixTime {
        self.1.expires_at
    }

    /// Resumes with whether the write happened (`false`: the compare-and-set failed).
    pub fn resume(self, engine: &Engine, written: bool, now: UnixTime) -> DeviceStep {
        self.0.on_write(engine, written, now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Pending,
    Approved,
    Denied,
    Delivered,
}

/// One device flow, as stored under `edgegate-device:<user code>`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// SHA-256 of the device code's secret, base64url.
    h: String,
    /// The client's name (`client_id` of the code request), shown on the confirm page.
    c: String,
    iat: u64,
    exp: u64,
    /// The current polling interval (grows with `slow_down`).
    iv: u64,
    /// The last poll (0: none yet).
    lp: u64,
    st: Status,
    /// The credential, between approval and delivery.
    tok: Option<String>,
    /// When the credential expires.
    te: Option<u64>,
    /// Who approved or denied (for logs).
    by: Option<String>,
}

/// A wrong-code counter (`edgegate-device-guesses:<who>`): `n` wrong codes since `w`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Counter {
    n: u32,
    w: u64,
}

/// The logged-in user at the verification page.
#[derive(Debug, Clone)]
struct Viewer {
    session: Session,
    /// SHA-256 of the session cookie's value (binds the confirm form to this session).
    cookie_hash: [u8; 32],
}

#[derive(Debug)]
pub(crate) struct Machine {
    generation: u64,
    tries: u8,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// `POST code`: creating the record; `codes` are the candidates left.
    Create {
        codes: Vec<String>,
        device_code_secret: String,
        record: Record,
        client: String,
    },
    /// `POST token`.
    Poll {
        code: String,
        hash: [u8; 32],
        /// The answer once the pending write lands.
        answer: Option<LoginReply>,
    },
    /// `GET page?user_code=`: a slot on the user's wrong-code counter, then on the overall one,
    /// then the record; a live record gives both slots back before its confirm page.
    Guess {
        code: String,
        viewer: Box<Viewer>,
        at: GuessAt,
        /// The confirm page, once the record was found live (sent after the refunds).
        answer: Option<LoginReply>,
    },
    /// `POST page`: approve or deny.
    Confirm {
        code: String,
        approve: bool,
        viewer: Box<Viewer>,
        answer: Option<LoginReply>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuessAt {
    /// Taking a slot on the user's counter (read, then compare-and-set).
    User,
    /// Taking a slot on the overall counter.
    Overall,
    /// Reading the entered code's record.
    Record,
    /// Giving the user's slot back (the code was right).
    RefundUser,
    /// Giving the overall slot back.
    RefundOverall,
}

// ---------------------------------------------------------------- user codes

/// The user code `input` names (case, spaces and dashes ignored), if it is one of this form.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// `BCDFGHJK` → `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

/// A user code as the logs show it: its first half and a mask (`BCDF-****`). The whole code would
/// let whoever reads the logs approve a waiting device into their own account. Half tells the
/// lines of one flow apart; the other half still leaves 20⁴ = 160,000 codes, far past the
/// wrong-code limits.
pub fn logged_user_code(code: &str) -> String {
    match code.get(..4) {
        Some(half) if code.len() > 4 => format!("{half}-****"),
        _ => "****".into(),
    }
}

/// Eight letters from eight random bytes (as one number in base 20: the bias is under 2⁻³⁰).
fn user_code_from(bytes: [u8; 8]) -> String {
    let mut n = u64::from_le_bytes(bytes);
    let mut out = String::with_capacity(USER_CODE_LEN);
    for _ in 0..USER_CODE_LEN {
        let i = usize::try_from(n % 20).unwrap_or(0);
        out.push(char::from(*USER_CODE_ALPHABET.get(i).unwrap_or(&b'B')));
        n /= 20;
    }
    out
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn record_key(code: &str) -> String {
    format!("{RECORD_PREFIX}{code}")
}

fn overall_key() -> String {
    format!("{GUESS_PREFIX}*")
}

fn user_key(id: &Identity) -> String {
    let who = sha256(format!("{}\n{}", id.provider, id.subject).as_bytes());
    format!("{GUESS_PREFIX}{}", b64::encode(who))
}

/// `<user code>.<secret>` → the user code and the secret's SHA-256.
fn parse_device_code(s: &str) -> Option<(String, [u8; 32])> {
    let (code, secret) = s.split_once('.')?;
    let code = normalize_user_code(code).filter(|c| c == code)?;
    let raw = b64::decode(secret).ok().filter(|r| r.len() == 32)?;
    Some((code, sha256(&raw)))
}

// ---------------------------------------------------------------- replies

fn json_reply(status: u16, v: serde_json::Value) -> LoginReply {
    let mut r = LoginReply::new(
        status,
        vec![
            ("content-type".into(), "application/json".into()),
            ("pragma".into(), "no-cache".into()),
        ],
        v.to_string(),
    );
    r.log = None;
    r
}

/// An RFC 6749 §5.2 error (400) with RFC 8628's codes.
fn oauth_error(code: &str, description: &str) -> LoginReply {
    json_reply(
        400,
        serde_json::json!({"error": code, "error_description": description}),
    )
}

fn internal(what: &str) -> LoginReply {
    let mut r = json_reply(500, serde_json::json!({"error": "server_error"}));
    r.log = Some(super::LogLine::warn(format!("device login: {what}")));
    r
}

const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

fn page(status: u16, title: &str, body: &str) -> LoginReply {
    LoginReply::new(
        status,
        vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("x-frame-options".into(), "DENY".into()),
            ("referrer-policy".into(), "no-referrer".into()),
            ("content-security-policy".into(), PAGE_CSP.into()),
        ],
        format!(
            "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
             <title>{t}</title><style>body{{font:16px system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em}}\
             input{{font:inherit;letter-spacing:.1em;text-transform:uppercase}}code{{font-size:1.3em}}</style>\
             <h1>{t}</h1>{body}",
            t = html_escape(title)
        ),
    )
}

fn form_page(d: &Device, status: u16, problem: Option<&str>) -> LoginReply {
    let problem = problem
        .map(|p| format!("<p role=alert><strong>{}</strong></p>", html_escape(p)))
        .unwrap_or_default();
    page(
        status,
        "Connect a device",
        &format!(
            "{problem}<p>Enter the code your device shows.</p>\
             <form method=get action=\"{action}\"><input name=user_code autocomplete=off autofocus \
             placeholder=XXXX-XXXX maxlength=16 required> <button>Continue</button></form>",
            action = html_escape(&d.page_path)
        ),
    )
}

fn confirm_page(
    d: &Device,
    code: &str,
    record: &Record,
    viewer: &Viewer,
    csrf: &str,
) -> LoginReply {
    let id = &viewer.session.identity;
    let who = id.email.as_deref().unwrap_or(&id.subject);
    let roles = if id.roles.is_empty() {
        String::from("none")
    } else {
        html_escape(&id.roles.join(", "))
    };
    page(
        200,
        "Approve this device?",
        &format!(
            "<p>The device or program <strong>{client}</strong> asks to act as you, \
             <strong>{who}</strong> (roles: {roles}).</p>\
             <p>Code: <code>{shown}</code>. Approve only if this is the code your own device shows \
             right now; if someone sent you this link, deny.</p>\
             <form method=post action=\"{action}\">\
             <input type=hidden name=user_code value=\"{code}\">\
             <input type=hidden name=csrf value=\"{csrf}\">\
             <button name=action value=approve>Approve</button> \
             <button name=action value=deny>Deny</button></form>",
            client = html_escape(&record.c),
            who = html_escape(who),
            shown = html_escape(&display_user_code(code)),
            action = html_escape(&d.page_path),
            code = html_escape(code),
            csrf = html_escape(csrf),
        ),
    )
}

// ---------------------------------------------------------------- the engine's entry

impl Engine {
    /// Which device route `path` is, when `login.device` is configured.
    pub fn device_route(&self, path: &str) -> Option<DeviceRoute> {
        self.login()?.device()?.route(path)
    }

    /// Starts the device route `req.path` names (`None`: none, or no `login.device`). `body`:
    /// the request body of a `POST` (read by the host, at most
    /// [`crate::engine::MAX_FORM_BODY`] bytes; empty otherwise); `random`: fresh bytes from the
    /// host's CSPRNG.
    pub fn device(
        &self,
        req: &Request<'_>,
        body: &[u8],
        random: &[u8; DEVICE_RANDOM_BYTES],
        now: UnixTime,
    ) -> Option<DeviceStep> {
        let login = self.login()?;
        let device = login.device()?;
        let route = device.route(req.path)?;
        let allowed: &[&str] = match route {
            DeviceRoute::Code | DeviceRoute::Token => &["POST"],
            DeviceRoute::Page => &["GET", "HEAD", "POST"],
        };
        if !allowed.contains(&req.method) {
            return Some(DeviceStep::Reply(LoginReply::method_not_allowed(
                &allowed.join(", "),
            )));
        }
        if body.len() > MAX_FORM_BODY {
            return Some(DeviceStep::Reply(oauth_error(
                "invalid_request",
                "the request body is too large",
            )));
        }
        // RFC 6749 §3.1: a parameter is sent once. Two values of a field the flow reads are
        // refused, not resolved: a proxy or firewall in front may read the other one.
        if let Some(name) = FORM_FIELDS.iter().find(|name| {
            form_urlencoded::parse(body)
                .filter(|(k, _)| k == **name)
                .nth(1)
                .is_some()
        }) {
            let why = format!("{name} appears more than once");
            return Some(DeviceStep::Reply(match route {
                DeviceRoute::Page => page(
                    400,
                    "Bad request",
                    &format!("<p>{}. Open the device page again.</p>", html_escape(&why)),
                ),
                DeviceRoute::Code | DeviceRoute::Token => oauth_error("invalid_request", &why),
            }));
        }
        let form = |name: &str| {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let machine = |stage| Machine {
            generation: self.generation(),
            tries: 0,
            stage,
        };
        Some(match route {
            DeviceRoute::Code => {
                if random.iter().all(|b| *b == 0) {
                    return Some(DeviceStep::Reply(internal(
                        "the host's random source gave zeros; no device code without randomness",
                    )));
                }
                let client = form("client_id").unwrap_or_else(|| "a device".into());
                if client.is_empty()
                    || client.len() > MAX_CLIENT_NAME
                    || client.chars().any(char::is_control)
                {
                    return Some(DeviceStep::Reply(oauth_error(
                        "invalid_request",
                        "client_id names the device: 1-64 characters without control characters",
                    )));
                }
                let (secret, rest) = random.split_at(32);
                let codes: Vec<String> = rest
                    .chunks_exact(8)
                    .take(3)
                    .filter_map(|c| <[u8; 8]>::try_from(c).ok())
                    .map(user_code_from)
                    .rev()
                    .collect();
                let record = Record {
                    h: b64::encode(sha256(secret)),
                    c: client.clone(),
                    iat: now,
                    exp: now.saturating_add(device.code_ttl),
                    iv: device.interval,
                    lp: 0,
                    st: Status::Pending,
                    tok: None,
                    te: None,
                    by: None,
                };
                machine(Stage::Create {
                    codes,
                    device_code_secret: b64::encode(secret),
                    record,
                    client,
                })
                .create(device)
            }
            DeviceRoute::Token => {
                match form("grant_type").as_deref() {
                    Some(DEVICE_GRANT_TYPE) => {}
                    Some(_) => {
                        return Some(DeviceStep::Reply(oauth_error(
                            "unsupported_grant_type",
                            "this endpoint answers the device_code grant only",
                        )))
                    }
                    None => {
                        return Some(DeviceStep::Reply(oauth_error(
                            "invalid_request",
                            "grant_type is missing",
                        )))
                    }
                }
                let Some(presented) = form("device_code") else {
                    return Some(DeviceStep::Reply(oauth_error(
                        "invalid_request",
                        "device_code is missing",
                    )));
                };
                let Some((code, hash)) = parse_device_code(&presented) else {
                    return Some(DeviceStep::Reply(oauth_error(
                        "invalid_grant",
                        "unknown device code",
                    )));
                };
                machine(Stage::Poll {
                    code: code.clone(),
                    hash,
                    answer: None,
                })
                .read(record_key(&code))
            }
            DeviceRoute::Page => {
                let viewer =
                    match self.viewer(req, now) {
                        Some(v) => v,
                        None if req.method == "POST" => return Some(DeviceStep::Reply(page(
                            401,
                            "Not logged in",
                            "<p>Your session has ended. Open the device page again and log in.</p>",
                        ))),
                        None => {
                            let rd: String =
                                form_urlencoded::byte_serialize(req.path.as_bytes()).collect();
                            return Some(DeviceStep::Reply(LoginReply::redirect(
                                format!("{}?rd={rd}", login.login_path()),
                                Vec::new(),
                            )));
                        }
                    };
                if req.method == "POST" {
                    let code = form("user_code").and_then(|c| normalize_user_code(&c));
                    let csrf = form("csrf").unwrap_or_default();
                    let approve = match form("action").as_deref() {
                        Some("approve") => true,
                        Some("deny") => false,
                        _ => {
                            return Some(DeviceStep::Reply(page(
                                400,
                                "Approve or deny",
                                "<p>The form names neither approve nor deny.</p>",
                            )))
                        }
                    };
                    let Some(code) = code.filter(|c| login.csrf_ok(&csrf, c, &viewer, now)) else {
                        return Some(DeviceStep::Reply(page(
                            403,
                            "Not confirmed",
                            "<p>This confirmation is not from your session (or it is too old). \
                             Open the device page again.</p>",
                        )));
                    };
                    return Some(
                        machine(Stage::Confirm {
                            code: code.clone(),
                            approve,
                            viewer: Box::new(viewer),
                            answer: None,
                        })
                        .read(record_key(&code)),
                    );
                }
                // One code per link (as the POSTs send each field once): with two, a proxy in
                // front and edgegate could each read another one.
                let query = req.path.split_once('?').map_or("", |(_, q)| q);
                let codes = form_urlencoded::parse(query.as_bytes())
                    .filter(|(k, _)| k == "user_code")
                    .count();
                if codes > 1 {
                    return Some(DeviceStep::Reply(form_page(
                        device,
                        400,
                        Some("The link names more than one code. Type the code your device shows."),
                    )));
                }
                let Some(entered) = req.query_param("user_code").map(|raw| {
                    form_urlencoded::parse(format!("v={raw}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                }) else {
                    return Some(DeviceStep::Reply(form_page(device, 200, None)));
                };
                let Some(code) = normalize_user_code(&entered) else {
                    return Some(DeviceStep::Reply(form_page(
                        device,
                        400,
                        Some("A code is 8 letters, like BCDF-GHJK. Check it and try again."),
                    )));
                };
                let key = user_key(&viewer.session.identity);
                machine(Stage::Guess {
                    code,
                    viewer: Box::new(viewer),
                    at: GuessAt::User,
                    answer: None,
                })
                .read(key)
            }
        })
    }

    /// The logged-in user of a request at the verification page: a valid session cookie.
    fn viewer(&self, req: &Request<'_>, now: UnixTime) -> Option<Viewer> {
        let sessions = self.sessions()?;
        let value = req.cookie(sessions.cookie_name())?;
        let session = sessions.open_session(value, now).ok()?;
        Some(Viewer {
            session,
            cookie_hash: sha256(value.as_bytes()),
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmClaims {
    aud: String,
    uc: String,
    sh: String,
    exp: u64,
}

impl Login {
    /// The compiled `login.device` section, when enabled.
    pub fn device(&self) -> Option<&Device> {
        self.device.as_ref()
    }

    /// The confirm form's token: the user code and this session, signed with the session keys.
    fn csrf_token(&self, code: &str, viewer: &Viewer, now: UnixTime) -> Option<String> {
        let ttl = self.device.as_ref().map_or(600, |d| d.code_ttl);
        let claims = ConfirmClaims {
            aud: CONFIRM_AUDIENCE.into(),
            uc: code.into(),
            sh: b64::encode(viewer.cookie_hash),
            exp: now.saturating_add(ttl),
        };
        let json = serde_json::to_vec(&claims).ok()?;
        self.ring.sign(&json).ok()
    }

    fn csrf_ok(&self, token: &str, code: &str, viewer: &Viewer, now: UnixTime) -> bool {
        let Ok((jws, _)) = self.ring.verify(token, 1024) else {
            return false;
        };
        let Some(c) = jws
            .claims()
            .ok()
            .and_then(|m| serde_json::from_value::<ConfirmClaims>(m.into()).ok())
        else {
            return false;
        };
        let same_session: bool =
            c.sh.as_bytes()
                .ct_eq(b64::encode(viewer.cookie_hash).as_bytes())
                .into();
        c.aud == CONFIRM_AUDIENCE && c.uc == code && now < c.exp && same_session
    }
}

// ---------------------------------------------------------------- the machine

fn parse<T: for<'de> Deserialize<'de>>(s: &Stored) -> Option<T> {
    serde_json::from_str(&s.value).ok()
}

impl Machine {
    fn read(self, key: String) -> DeviceStep {
        DeviceStep::Read(DeviceRead(Box::new(self), key))
    }

    fn write(self, key: String, value: String, expect: Option<u64>, expires_at: u64) -> DeviceStep {
        DeviceStep::Write(DeviceWrite(
            Box::new(self),
            Write {
                key,
                value,
                expect,
                expires_at,
            },
        ))
    }

    /// The next candidate user code's record, created if absent.
    fn create(mut self, d: &Device) -> DeviceStep {
        let Stage::Create { codes, record, .. } = &mut self.stage else {
            return DeviceStep::Reply(internal("device flow out of order"));
        };
        let Some(code) = codes.last().cloned() else {
            return DeviceStep::Reply(internal(
                "three user codes in a row were taken; the store may be full",
            ));
        };
        let Ok(value) = serde_json::to_string(record) else {
            return DeviceStep::Reply(internal("could not encode a device record"));
        };
        let expires = record.exp.saturating_add(d.code_ttl);
        self.write(record_key(&code), value, None, expires)
    }

    fn device<'e>(&self, engine: &'e Engine) -> Result<(&'e Login, &'e Device), LoginReply> {
        if self.generation != engine.generation() {
            return Err(internal("the configuration changed during the device flow"));
        }
        engine
            .login()
            .and_then(|l| l.device().map(|d| (l, d)))
            .ok_or_else(|| internal("device login is not configured"))
    }

    fn on_read(mut self, engine: &Engine, found: Option<Stored>, now: UnixTime) -> DeviceStep {
        let (login, d) = match self.device(engine) {
            Ok(x) => x,
            Err(r) => return DeviceStep::Reply(r),
        };
        match std::mem::replace(
            &mut self.stage,
            Stage::Poll {
                code: String::new(),
                hash: [0; 32],
                answer: None,
            },
        ) {
            Stage::Poll { code, hash, .. } => self.poll(d, code, hash, found, now),
            Stage::Confirm {
                code,
                approve,
                viewer,
                ..
            } => self.confirm(engine, d, code, approve, viewer, found, now),
            Stage::Guess {
                code,
                viewer,
                at,
                answer,
            } => self.guess(login, d, code, viewer, at, answer, found, now),
            Stage::Create { .. } => DeviceStep::Reply(internal("device flow out of order")),
        }
    }

    fn on_write(mut self, engine: &Engine, written: bool, _now: UnixTime) -> DeviceStep {
        let d = match self.device(engine) {
            Ok((_, d)) => d,
            Err(r) => return DeviceStep::Reply(r),
        };
        match &mut self.stage {
            Stage::Create {
                codes,
                device_code_secret,
                record,
                client,
            } => {
                if !written {
                    codes.pop();
                    return self.create(d);
                }
                let Some(code) = codes.last() else {
                    return DeviceStep::Reply(internal("device flow out of order"));
                };
                let shown = display_user_code(code);
                let mut r = json_reply(
                    200,
                    serde_json::json!({
                        "device_code": format!("{code}.{device_code_secret}"),
                        "user_code": shown,
                        "verification_uri": d.verification_uri,
                        "verification_uri_complete": format!("{}?user_code={shown}", d.verification_uri),
                        "expires_in": record.exp.saturating_sub(record.iat),
                        "interval": d.interval,
                    }),
                );
                r.log = Some(super::LogLine::info(format!(
                    "device login: code {} issued to {client:?}",
                    logged_user_code(code)
                )));
                DeviceStep::Reply(r)
            }
            Stage::Poll { code, answer, .. } | Stage::Confirm { code, answer, .. } => {
                match (written, answer.take()) {
                    (true, Some(a)) => DeviceStep::Reply(a),
                    (true, None) => DeviceStep::Reply(internal("device flow out of order")),
                    (false, _) => {
                        let key = record_key(code);
                        self.retry(d, key)
                    }
                }
            }
            Stage::Guess { .. } => self.guessed(d, written),
        }
    }

    /// Reads `key` again after a lost compare-and-set, a bounded number of times.
    fn retry(mut self, d: &Device, key: String) -> DeviceStep {
        self.tries = self.tries.saturating_add(1);
        if self.tries > RETRIES {
            return match &self.stage {
                Stage::Poll { .. } => DeviceStep::Reply(oauth_error(
                    "slow_down",
                    "several polls of this device code arrived at once; wait the interval",
                )),
                // many code entries at once: refused like too many (fail closed, not a 500)
                Stage::Guess { .. } => too_many(d.code_ttl),
                _ => DeviceStep::Reply(internal(
                    "the device store kept losing compare-and-set races",
                )),
            };
        }
        self.read(key)
    }

    fn poll(
        mut self,
        d: &Device,
        code: String,
        hash: [u8; 32],
        found: Option<Stored>,
        now: UnixTime,
    ) -> DeviceStep {
        let unknown = || DeviceStep::Reply(oauth_error("invalid_grant", "unknown device code"));
        let Some(stored) = found else {
            return unknown();
        };
        let Some(mut record) = parse::<Record>(&stored) else {
            return DeviceStep::Reply(internal("a device record in the store is not readable"));
        };
        let ours = b64::decode(&record.h)
            .ok()
            .is_some_and(|h| bool::from(h.as_slice().ct_eq(&hash)));
        if !ours {
            return unknown();
        }
        if record.st == Status::Delivered {
            return DeviceStep::Reply(oauth_error(
                "invalid_grant",
                "this device code was already used",
            ));
        }
        if now >= record.exp {
            return DeviceStep::Reply(oauth_error(
                "expired_token",
                "the device code expired; start again",
            ));
        }
        if record.st == Status::Denied {
            return DeviceStep::Reply(oauth_error("access_denied", "the user denied the request"));
        }
        let answer = if record.lp != 0 && now < record.lp.saturating_add(record.iv) {
            record.iv = record.iv.saturating_add(SLOW_DOWN_SECONDS);
            json_reply(
                400,
                serde_json::json!({
                    "error": "slow_down",
                    "error_description": format!("poll at most every {} seconds", record.iv),
                    "interval": record.iv,
                }),
            )
        } else if record.st == Status::Approved {
            let (Some(tok), Some(te)) = (record.tok.take(), record.te) else {
                return DeviceStep::Reply(internal("an approved device record has no credential"));
            };
            record.st = Status::Delivered;
            let mut r = json_reply(
                200,
                serde_json::json!({
                    "access_token": tok,
                    "token_type": "Bearer",
                    "expires_in": te.saturating_sub(now),
                }),
            );
            r.log = Some(super::LogLine::info(format!(
                "device login: credential for {:?} delivered to {:?} ({})",
                record.by.as_deref().unwrap_or(""),
                record.c,
                logged_user_code(&code)
            )));
            r
        } else {
            oauth_error(
                "authorization_pending",
                "the user has not confirmed the code yet",
            )
        };
        record.lp = now;
        let Ok(value) = serde_json::to_string(&record) else {
            return DeviceStep::Reply(internal("could not encode a device record"));
        };
        let expires = record.exp.saturating_add(d.code_ttl);
        self.stage = Stage::Poll {
            code: code.clone(),
            hash,
            answer: Some(answer),
        };
        self.write(record_key(&code), value, Some(stored.version), expires)
    }

    #[allow(clippy::too_many_arguments)]
    fn confirm(
        mut self,
        engine: &Engine,
        d: &Device,
        code: String,
        approve: bool,
        viewer: Box<Viewer>,
        found: Option<Stored>,
        now: UnixTime,
    ) -> DeviceStep {
        let Some(stored) = found else {
            return DeviceStep::Reply(page(
                410,
                "Code expired",
                "<p>This code has expired. Start again on your device.</p>",
            ));
        };
        let Some(mut record) = parse::<Record>(&stored) else {
            return DeviceStep::Reply(internal("a device record in the store is not readable"));
        };
        if now >= record.exp {
            return DeviceStep::Reply(page(
                410,
                "Code expired",
                "<p>This code has expired. Start again on your device.</p>",
            ));
        }
        if record.st != Status::Pending {
            return DeviceStep::Reply(page(
                409,
                "Already answered",
                "<p>This code was already approved or denied; a code is used once. Start again on your device.</p>",
            ));
        }
        let id = &viewer.session.identity;
        let answer = if approve {
            let Some(sessions) = engine.sessions() else {
                return DeviceStep::Reply(internal("sessions are not configured"));
            };
            let until = now
                .saturating_add(d.token_ttl)
                .min(viewer.session.expires_at);
            let mut identity = id.clone();
            identity.credential = viewer.session.origin;
            let sealed = match sessions.seal_until(&identity, now, until) {
                Ok(s) => s,
                Err(e) => return DeviceStep::Reply(internal(e.message())),
            };
            record.tok = Some(format!("{BEARER_PREFIX}{sealed}"));
            record.te = Some(until);
            record.st = Status::Approved;
            let mut r = page(
                200,
                "Device approved",
                "<p>Your device is signed in. You can close this page and return to it.</p>",
            );
            r.log = Some(super::LogLine::info(format!(
                "device login: {} approved {:?} ({})",
                id.subject,
                record.c,
                logged_user_code(&code)
            )));
            r
        } else {
            record.st = Status::Denied;
            let mut r = page(
                200,
                "Device denied",
                "<p>The device was refused. If you did not start this, nothing more is needed.</p>",
            );
            r.log = Some(super::LogLine::info(format!(
                "device login: {} denied {:?} ({})",
                id.subject,
                record.c,
                logged_user_code(&code)
            )));
            r
        };
        record.by = Some(id.subject.clone());
        let Ok(value) = serde_json::to_string(&record) else {
            return DeviceStep::Reply(internal("could not encode a device record"));
        };
        let expires = record.exp.saturating_add(d.code_ttl);
        self.stage = Stage::Confirm {
            code: code.clone(),
            approve,
            viewer,
            answer: Some(answer),
        };
        self.write(record_key(&code), value, Some(stored.version), expires)
    }

    /// Over a wrong-code limit now?
    fn over(c: Option<&Stored>, limit: u32, window: u64, now: UnixTime) -> bool {
        c.and_then(parse::<Counter>)
            .is_some_and(|c| now < c.w.saturating_add(window) && c.n >= limit)
    }

    /// A counter after one more wrong code.
    fn counted(c: Option<&Stored>, window: u64, now: UnixTime) -> Counter {
        match c.and_then(parse::<Counter>) {
            Some(c) if now < c.w.saturating_add(window) => Counter {
                n: c.n.saturating_add(1),
                w: c.w,
            },
            _ => Counter { n: 1, w: now },
        }
    }

    /// A counter after giving one slot back (`None`: nothing to give back in this window).
    fn refunded(c: Option<&Stored>, window: u64, now: UnixTime) -> Option<Counter> {
        c.and_then(parse::<Counter>)
            .filter(|c| now < c.w.saturating_add(window) && c.n > 0)
            .map(|c| Counter {
                n: c.n.saturating_sub(1),
                w: c.w,
            })
    }

    /// A counter or the record of the guess sequence arrived. Every entry first takes a slot
    /// on the user's counter and on the overall one by compare-and-set, refusing when the
    /// counter is full; only then is the record read. So entries sent at once cannot all pass
    /// a check made before any of them was counted: at most the limit are ever answered. A
    /// live record gives both slots back (a right code is no wrong one) before its page.
    #[allow(clippy::too_many_arguments)]
    fn guess(
        mut self,
        login: &Login,
        d: &Device,
        code: String,
        viewer: Box<Viewer>,
        at: GuessAt,
        answer: Option<LoginReply>,
        found: Option<Stored>,
        now: UnixTime,
    ) -> DeviceStep {
        let window = d.code_ttl;
        let key = match at {
            GuessAt::User | GuessAt::RefundUser => user_key(&viewer.session.identity),
            GuessAt::Overall | GuessAt::RefundOverall => overall_key(),
            GuessAt::Record => record_key(&code),
        };
        let counter = match at {
            GuessAt::User | GuessAt::Overall => {
                let limit = if at == GuessAt::User {
                    d.per_user
                } else {
                    d.overall
                };
                if Self::over(found.as_ref(), limit, window, now) {
                    return too_many(window);
                }
                Some(Self::counted(found.as_ref(), window, now))
            }
            GuessAt::RefundUser | GuessAt::RefundOverall => {
                Self::refunded(found.as_ref(), window, now)
            }
            GuessAt::Record => {
                let live = found
                    .as_ref()
                    .and_then(parse::<Record>)
                    .filter(|r| r.st == Status::Pending && now < r.exp);
                let Some(record) = live else {
                    // a wrong (or used, or expired) code: its slots stay taken
                    let mut r = form_page(
                        d,
                        404,
                        Some("No device is waiting with that code (or it expired). Check it and try again."),
                    );
                    r.log = Some(super::LogLine::info(format!(
                        "device login: a wrong user code was entered ({})",
                        logged_user_code(&code)
                    )));
                    return DeviceStep::Reply(r);
                };
                let Some(csrf) = login.csrf_token(&code, &viewer, now) else {
                    return DeviceStep::Reply(internal("could not sign the confirm form"));
                };
                let page = confirm_page(d, &code, &record, &viewer, &csrf);
                let key = user_key(&viewer.session.identity);
                self.stage = Stage::Guess {
                    code,
                    viewer,
                    at: GuessAt::RefundUser,
                    answer: Some(page),
                };
                return self.read(key);
            }
        };
        let expect = found.as_ref().map(|s| s.version);
        self.stage = Stage::Guess {
            code,
            viewer,
            at,
            answer,
        };
        let Some(counter) = counter else {
            // nothing to give back (the window passed meanwhile): on to the next step
            return self.guessed(d, true);
        };
        let Ok(value) = serde_json::to_string(&counter) else {
            return DeviceStep::Reply(internal("could not encode a wrong-code counter"));
        };
        self.write(key, value, expect, counter.w.saturating_add(window))
    }

    /// A counter write of the guess sequence ended: the next step, or (lost to a concurrent
    /// writer) the same counter read again and decided again.
    fn guessed(mut self, d: &Device, written: bool) -> DeviceStep {
        let Stage::Guess {
            code,
            viewer,
            at,
            answer,
        } = &mut self.stage
        else {
            return DeviceStep::Reply(internal("device flow out of order"));
        };
        let user = user_key(&viewer.session.identity);
        if !written {
            let key = match at {
                GuessAt::User | GuessAt::RefundUser => user,
                _ => overall_key(),
            };
            return self.retry(d, key);
        }
        let (next, key) = match at {
            GuessAt::User => (GuessAt::Overall, overall_key()),
            GuessAt::Overall => (GuessAt::Record, record_key(code)),
            GuessAt::RefundUser => (GuessAt::RefundOverall, overall_key()),
            GuessAt::RefundOverall => {
                return DeviceStep::Reply(
                    answer
                        .take()
                        .unwrap_or_else(|| internal("device flow out of order")),
                )
            }
            GuessAt::Record => return DeviceStep::Reply(internal("device flow out of order")),
        };
        *at = next;
        self.read(key)
    }
}

/// The answer to a code entry over a wrong-code limit.
fn too_many(window: u64) -> DeviceStep {
    let mut r = page(
        429,
        "Too many wrong codes",
        "<p>Too many wrong codes were entered. Wait a few minutes, then try again.</p>",
    );
    r.headers.push(("retry-after".into(), window.to_string()));
    r.log = Some(super::LogLine::warn(
        "device login: wrong-code limit reached; refusing code entries".into(),
    ));
    DeviceStep::Reply(r)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{json, Value};

    use super::super::test_support::*;
    use super::*;
    use crate::engine::Verdict;
    use crate::verifier::NoRemoteKeys;

    /// The host's store: compare-and-set with versions, as a Durable Object or shared data.
    #[derive(Default)]
    struct Store {
        records: HashMap<String, (String, u64, u64)>,
        next: u64,
        /// Writes to fail (a concurrent writer got there first) before they land.
        lose: u32,
        writes: u32,
    }

    impl Store {
        fn get(&self, key: &str, now: u64) -> Option<Stored> {
            self.records
                .get(key)
                .filter(|(_, _, exp)| now < *exp)
                .map(|(v, version, _)| Stored {
                    value: v.clone(),
                    version: *version,
                })
        }
        fn cas(&mut self, w: &DeviceWrite, now: u64) -> bool {
            if self.lose > 0 {
                self.lose -= 1;
                self.next += 1;
                if let Some(r) = self.records.get_mut(w.key()) {
                    r.1 = self.next;
                }
                return false;
            }
            let current = self.get(w.key(), now).map(|s| s.version);
            if current != w.expect() {
                return false;
            }
            self.next += 1;
            self.writes += 1;
            self.records.insert(
                w.key().into(),
                (w.value().into(), self.next, w.expires_at()),
            );
            true
        }
        fn record(&self, code: &str) -> Value {
            serde_json::from_str(&self.records[&record_key(code)].0).unwrap()
        }
    }

    fn config(device: Value) -> Value {
        let mut v = config_value();
        v["login"]["device"] = device;
        v["rules"] = json!([
            {"name": "api", "match": {"path": {"prefix": "/api"}}, "credentials": ["session"], "require": {"roles_any": ["admin"]}},
            {"name": "jwt-only", "match": {"path": {"prefix": "/jwt"}}, "credentials": ["jwt"]},
            {"name": "public", "match": {"path": {"prefix": "/pub"}}, "require": {"public": true}},
            {"name": "public-jwt", "match": {"path": {"prefix": "/pjwt"}}, "credentials": ["jwt"], "require": {"public": true}}
        ]);
        v
    }

    fn device_engine() -> Engine {
        engine_from(&config(json!({}))).unwrap()
    }

    /// With sessions of an hour (longer than a code lives).
    fn long_sessions(device: Value) -> Engine {
        let mut v = config(device);
        v["session"]["lifetime_seconds"] = json!(3600);
        engine_from(&v).unwrap()
    }

    fn drive(e: &Engine, store: &mut Store, mut step: DeviceStep, now: u64) -> LoginReply {
        for _ in 0..40 {
            step = match step {
                DeviceStep::Reply(r) => return r,
                DeviceStep::Read(r) => {
                    let found = store.get(r.key(), now);
                    r.resume(e, found, now)
                }
                DeviceStep::Write(w) => {
                    let ok = store.cas(&w, now);
                    w.resume(e, ok, now)
                }
            };
        }
        panic!("the flow does not end");
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        e: &Engine,
        store: &mut Store,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
        seed: u8,
        now: u64,
    ) -> LoginReply {
        let req = Request {
            method,
            path,
            headers,
        };
        let mut random = [seed; DEVICE_RANDOM_BYTES];
        random[40] = seed.wrapping_mul(7);
        random[48] = seed.wrapping_mul(13);
        let step = e.device(&req, body.as_bytes(), &random, now).unwrap();
        drive(e, store, step, now)
    }

    fn json_of(r: &LoginReply) -> Value {
        serde_json::from_str(&r.body).unwrap()
    }

    fn header<'r>(r: &'r LoginReply, name: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A device asks for a code: the reply.
    fn code_reply(e: &Engine, store: &mut Store, now: u64) -> LoginReply {
        call(
            e,
            store,
            "POST",
            "/auth/device/code",
            &[],
            "client_id=edgegate-cli",
            9,
            now,
        )
    }

    /// A device asks for a code: (device_code, user_code as shown).
    fn start(e: &Engine, store: &mut Store, now: u64) -> (String, String) {
        let r = code_reply(e, store, now);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = json_of(&r);
        (
            v["device_code"].as_str().unwrap().into(),
            v["user_code"].as_str().unwrap().into(),
        )
    }

    /// The device polls: the reply.
    fn poll_reply(e: &Engine, store: &mut Store, device_code: &str, now: u64) -> LoginReply {
        let body = format!(
            "grant_type={}&device_code={}",
            form_urlencoded::byte_serialize(DEVICE_GRANT_TYPE.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(device_code.as_bytes()).collect::<String>()
        );
        call(e, store, "POST", "/auth/device/token", &[], &body, 0, now)
    }

    fn poll(e: &Engine, store: &mut Store, device_code: &str, now: u64) -> (u16, Value) {
        let r = poll_reply(e, store, device_code, now);
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        (r.status, json_of(&r))
    }

    fn error_of(e: &Engine, store: &mut Store, device_code: &str, now: u64) -> String {
        let (status, v) = poll(e, store, device_code, now);
        assert_eq!(status, 400, "{v}");
        v["error"].as_str().unwrap().into()
    }

    /// The browser's view of the page for `code` with the cookies `cookies`.
    fn page_for(e: &Engine, store: &mut Store, cookies: &str, code: &str, now: u64) -> LoginReply {
        let path = format!("/auth/device?user_code={code}");
        call(
            e,
            store,
            "GET",
            &path,
            &[("cookie", cookies), ("accept", "text/html")],
            "",
            0,
            now,
        )
    }

    fn csrf_of(page: &LoginReply) -> String {
        let at = page.body.find("name=csrf value=\"").unwrap() + 17;
        let rest = &page.body[at..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    fn answer(
        e: &Engine,
        store: &mut Store,
        cookies: &str,
        code: &str,
        csrf: &str,
        action: &str,
        now: u64,
    ) -> LoginReply {
        let body = format!("user_code={code}&csrf={csrf}&action={action}");
        call(
            e,
            store,
            "POST",
            "/auth/device",
            &[("cookie", cookies)],
            &body,
            0,
            now,
        )
    }

    /// Start, log in, see the confirm page and approve: the device code and the cookies.
    fn approved(e: &Engine, store: &mut Store, now: u64) -> (String, String) {
        let (dc, uc) = start(e, store, now);
        let cookies = logged_in(e, now, false);
        let page = page_for(e, store, &cookies, &uc, now);
        assert_eq!(page.status, 200, "{}", page.body);
        let r = answer(e, store, &cookies, &uc, &csrf_of(&page), "approve", now);
        assert_eq!(r.status, 200, "{}", r.body);
        (dc, cookies)
    }

    #[test]
    fn config_defaults_and_refusals_name_the_field() {
        let e = device_engine();
        let d = e.login().unwrap().device().unwrap();
        assert_eq!(d.verification_uri(), "https://app.example.com/auth/device");
        assert_eq!(d.interval(), 5);
        assert_eq!(
            e.device_route("/auth/device?user_code=x"),
            Some(DeviceRoute::Page)
        );
        assert_eq!(e.device_route("/auth/device/code"), Some(DeviceRoute::Code));
        assert_eq!(
            e.device_route("/auth/device/token"),
            Some(DeviceRoute::Token)
        );
        assert_eq!(e.device_route("/auth/devices"), None);
        // off: no routes, no bearer sessions
        let off = engine_from(&config(json!({"enabled": false}))).unwrap();
        assert_eq!(off.device_route("/auth/device/code"), None);
        assert!(engine().device_route("/auth/device").is_none());
        let bad = config(json!({
            "code_ttl_s": 9, "interval_s": 0, "token_ttl_s": 401,
            "max_wrong_codes_per_user": 0, "max_wrong_codes": 0, "path": "/auth/device/"
        }));
        let mut got = paths(&bad);
        got.sort();
        assert_eq!(
            got,
            [
                "login.device.code_ttl_s",
                "login.device.interval_s",
                "login.device.max_wrong_codes",
                "login.device.max_wrong_codes_per_user",
                "login.device.path",
                "login.device.token_ttl_s",
            ]
        );
        assert!(engine_from(&config(json!({"path": "/auth"}))).is_ok());
        assert_eq!(
            paths(&config(json!({"path": "/auth/me"}))),
            ["login.device.path"]
        );
        let mut v = config(json!({}));
        v["login"]["device"]["surprise"] = json!(1);
        assert!(engine_from(&v).is_err());
    }

    #[test]
    fn user_codes_are_short_unambiguous_and_read_loosely() {
        for seed in 0..50u8 {
            let c = user_code_from([seed, seed.wrapping_mul(31), 3, 4, 5, 6, 7, seed]);
            assert_eq!(c.len(), 8);
            assert!(c.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{c}");
        }
        assert_eq!(normalize_user_code("bcdf-ghjk"), Some("BCDFGHJK".into()));
        assert_eq!(normalize_user_code(" BCDF GHJK "), Some("BCDFGHJK".into()));
        assert_eq!(normalize_user_code("BCDFGHJ"), None);
        assert_eq!(
            normalize_user_code("BCDFGHJA"),
            None,
            "vowels are not in the alphabet"
        );
        assert_eq!(normalize_user_code("BCDFGHJ0"), None);
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
        // the device code names its user code exactly and carries 32 bytes
        let secret = b64::encode([1u8; 32]);
        assert!(parse_device_code(&format!("BCDFGHJK.{secret}")).is_some());
        assert!(parse_device_code(&format!("bcdfghjk.{secret}")).is_none());
        assert!(parse_device_code("BCDFGHJK.c2hvcnQ").is_none());
        assert!(parse_device_code("BCDFGHJK").is_none());
    }

    #[test]
    fn the_code_endpoint_answers_rfc_8628_3_2() {
        let e = device_engine();
        let mut store = Store::default();
        let r = call(
            &e,
            &mut store,
            "POST",
            "/auth/device/code",
            &[],
            "client_id=my-cli&scope=x",
            9,
            NOW,
        );
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        let v = json_of(&r);
        let uc = v["user_code"].as_str().unwrap();
        assert_eq!(uc.len(), 9);
        assert_eq!(uc.as_bytes()[4], b'-');
        assert_eq!(v["verification_uri"], "https://app.example.com/auth/device");
        assert_eq!(
            v["verification_uri_complete"],
            format!("https://app.example.com/auth/device?user_code={uc}")
        );
        assert_eq!(v["expires_in"], 600);
        assert_eq!(v["interval"], 5);
        let dc = v["device_code"].as_str().unwrap();
        assert!(dc.starts_with(&uc.replace('-', "")) && dc.len() > 50);
        // the store has the secret's hash only, and the client's name
        let rec = store.record(&uc.replace('-', ""));
        assert_eq!(rec["c"], "my-cli");
        assert_eq!(rec["st"], "pending");
        assert!(!store
            .records
            .values()
            .any(|(v, _, _)| v.contains(dc.split_once('.').unwrap().1)));
        assert_eq!(store.records.values().next().unwrap().2, NOW + 1200);
        // not a GET; not without randomness; not a strange client name
        assert_eq!(
            call(&e, &mut store, "GET", "/auth/device/code", &[], "", 9, NOW).status,
            405
        );
        assert_eq!(
            call(&e, &mut store, "POST", "/auth/device/code", &[], "", 0, NOW).status,
            500
        );
        let long = format!("client_id={}", "x".repeat(65));
        assert_eq!(
            call(
                &e,
                &mut store,
                "POST",
                "/auth/device/code",
                &[],
                &long,
                9,
                NOW
            )
            .status,
            400
        );
        assert_eq!(
            call(
                &e,
                &mut store,
                "POST",
                "/auth/device/code",
                &[],
                "client_id=a%0Ab",
                9,
                NOW
            )
            .status,
            400
        );
    }

    #[test]
    fn a_taken_user_code_takes_the_next_candidate_and_three_taken_fail_closed() {
        let e = device_engine();
        let mut store = Store::default();
        let (_, first) = start(&e, &mut store, NOW);
        // the same random bytes: the first candidate is taken, the second is used
        let (_, second) = start(&e, &mut store, NOW);
        assert_ne!(first, second);
        let (_, third) = start(&e, &mut store, NOW);
        assert_ne!(third, second);
        let r = call(&e, &mut store, "POST", "/auth/device/code", &[], "", 9, NOW);
        assert_eq!(r.status, 500);
        assert!(r.log.unwrap().text.contains("taken"));
    }

    #[test]
    fn polling_answers_pending_then_slow_down_growing_the_interval() {
        let e = device_engine();
        let mut store = Store::default();
        let (dc, uc) = start(&e, &mut store, NOW);
        assert_eq!(error_of(&e, &mut store, &dc, NOW), "authorization_pending");
        // 4 s later: too fast
        let (_, v) = poll(&e, &mut store, &dc, NOW + 4);
        assert_eq!(v["error"], "slow_down");
        assert_eq!(v["interval"], 10);
        assert_eq!(store.record(&uc.replace('-', ""))["iv"], 10);
        // 5 s after that is still too fast now (interval 10): 15
        let (_, v) = poll(&e, &mut store, &dc, NOW + 9);
        assert_eq!(v["interval"], 15);
        // waiting the interval: pending again, the interval stays
        assert_eq!(
            error_of(&e, &mut store, &dc, NOW + 24),
            "authorization_pending"
        );
        assert_eq!(store.record(&uc.replace('-', ""))["iv"], 15);
    }

    #[test]
    fn approval_delivers_the_credential_once() {
        let e = device_engine();
        let mut store = Store::default();
        let (dc, _) = approved(&e, &mut store, NOW);
        let (status, v) = poll(&e, &mut store, &dc, NOW + 5);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["token_type"], "Bearer");
        // bounded by the session's remaining lifetime (400 s in the fixture) and token_ttl_s
        assert_eq!(v["expires_in"], 395);
        let token = v["access_token"].as_str().unwrap();
        assert!(token.starts_with("egs_"));
        // the record no longer holds it
        assert!(!store
            .records
            .values()
            .any(|(v, _, _)| v.contains(&token[4..])));
        // single delivery
        assert_eq!(error_of(&e, &mut store, &dc, NOW + 10), "invalid_grant");
    }

    #[test]
    fn logs_show_half_of_a_user_code_never_all_of_it() {
        let e = device_engine();
        let mut store = Store::default();
        let r = code_reply(&e, &mut store, NOW);
        let code = json_of(&r)["user_code"].as_str().unwrap().to_string();
        let device_code = json_of(&r)["device_code"].as_str().unwrap().to_string();
        let (half, rest) = code.split_once('-').unwrap();
        let hidden = |line: &str| !line.contains(rest) && !line.contains(&code.replace('-', ""));
        let issued = r.log.unwrap().text;
        assert!(
            issued.contains(&format!("{half}-****")) && hidden(&issued),
            "{issued}"
        );
        // approved (and the page's own lines), then delivered
        let cookies = logged_in(&e, NOW, false);
        let page = page_for(&e, &mut store, &cookies, &code, NOW);
        let r = answer(
            &e,
            &mut store,
            &cookies,
            &code,
            &csrf_of(&page),
            "approve",
            NOW,
        );
        let line = r.log.unwrap().text;
        assert!(line.contains("approved") && hidden(&line), "{line}");
        let r = poll_reply(&e, &mut store, &device_code, NOW + 5);
        assert_eq!(r.status, 200, "{}", r.body);
        let line = r.log.unwrap().text;
        assert!(line.contains("delivered") && hidden(&line), "{line}");
        // a wrong code, as typed: its tail stays out of the log too
        let r = page_for(&e, &mut store, &cookies, "BBBB-CDFG", NOW + 1);
        assert_eq!(r.status, 404, "{}", r.body);
        let line = r.log.unwrap().text;
        assert!(
            line.contains("BBBB-****") && !line.contains("CDFG"),
            "{line}"
        );
    }

    #[test]
    fn the_credential_opens_session_rules_with_the_users_roles() {
        let e = device_engine();
        let mut store = Store::default();
        let (dc, _) = approved(&e, &mut store, NOW);
        let (_, v) = poll(&e, &mut store, &dc, NOW + 5);
        let bearer = format!("Bearer {}", v["access_token"].as_str().unwrap());
        let decide = |path: &str, at: u64| {
            let headers = [("authorization", bearer.as_str())];
            let req = Request {
                method: "GET",
                path,
                headers: &headers,
            };
            let mut cache = e.new_cache();
            e.decide(&req, &NoRemoteKeys, &mut cache, at)
                .into_verdict()
                .unwrap()
        };
        match decide("/api/x", NOW + 6) {
            Verdict::Allow {
                identity, consumed, ..
            } => {
                let id = identity.unwrap();
                assert_eq!(id.subject, "alice");
                assert_eq!(id.roles, ["admin"]);
                assert_eq!(id.credential, crate::identity::CredentialKind::Session);
                assert_eq!(id.expires_at, Some(NOW + 400));
                // the bearer value does not go upstream
                let edits = e.upstream_edits(&[("authorization", &bearer)], consumed.as_ref());
                assert!(edits.apply(&[("authorization", &bearer)]).is_empty());
            }
            Verdict::Reply(r) => panic!("{r:?}"),
        }
        // a JWT-only rule does not take it
        assert!(matches!(decide("/jwt/x", NOW + 6), Verdict::Reply(r) if r.status == 401));
        // it expires with the session that approved it
        assert!(matches!(decide("/api/x", NOW + 400), Verdict::Reply(r) if r.status == 401));
    }

    /// The credential is a session of the user (it opens every `session` rule, and works as the
    /// session cookie): like the session cookie it never goes upstream, also where the rule
    /// did not take it (a public route, a rule of other kinds) or where it no longer opens.
    #[test]
    fn the_credential_never_goes_upstream_even_where_no_rule_took_it() {
        let e = device_engine();
        let mut store = Store::default();
        let (dc, _) = approved(&e, &mut store, NOW);
        let (_, v) = poll(&e, &mut store, &dc, NOW + 5);
        let bearer = format!("Bearer {}", v["access_token"].as_str().unwrap());
        let lower = format!("bearer  {}", v["access_token"].as_str().unwrap());
        for (path, at, auth) in [
            ("/pub/x", NOW + 6, &bearer),
            ("/pjwt/x", NOW + 6, &bearer),
            ("/pub/x", NOW + 6, &lower),
            // expired: a public route ignores it, and it still stays here
            ("/pub/x", NOW + 400, &bearer),
        ] {
            let headers = [("authorization", auth.as_str()), ("accept", "*/*")];
            let req = Request {
                method: "GET",
                path,
                headers: &headers,
            };
            let mut cache = e.new_cache();
            let Verdict::Allow { consumed, .. } = e
                .decide(&req, &NoRemoteKeys, &mut cache, at)
                .into_verdict()
                .unwrap()
            else {
                panic!("{path} is public");
            };
            let edits = e.upstream_edits(&headers, consumed.as_ref());
            assert_eq!(
                edits.apply(&headers),
                [("accept".into(), "*/*".into())],
                "{path} at {at}"
            );
        }
        // any other bearer value on a public route is the client's business
        let headers = [("authorization", "Bearer eyJ.x.y")];
        let edits = e.upstream_edits(&headers, None);
        assert!(edits.remove.is_empty());
    }

    #[test]
    fn token_ttl_bounds_the_credential() {
        let mut v = config(json!({"token_ttl_s": 60}));
        v["session"]["lifetime_seconds"] = json!(3600);
        let e = engine_from(&v).unwrap();
        let mut store = Store::default();
        let (dc, _) = approved(&e, &mut store, NOW);
        let (_, v) = poll(&e, &mut store, &dc, NOW + 5);
        assert_eq!(v["expires_in"], 55);
    }

    #[test]
    fn denial_expiry_and_unknown_codes_answer_their_errors() {
        let e = device_engine();
        let mut store = Store::default();
        let (dc, uc) = start(&e, &mut store, NOW);
        let cookies = logged_in(&e, NOW, false);
        let page = page_for(&e, &mut store, &cookies, &uc, NOW);
        let r = answer(&e, &mut store, &cookies, &uc, &csrf_of(&page), "deny", NOW);
        assert_eq!(r.status, 200);
        assert!(r.body.contains("denied"));
        assert_eq!(error_of(&e, &mut store, &dc, NOW + 5), "access_denied");
        assert_eq!(error_of(&e, &mut store, &dc, NOW + 10), "access_denied");
        // expired (the record lives on for a while, so the device learns why)
        let (dc2, _) = start(&e, &mut store, NOW + 1);
        assert_eq!(error_of(&e, &mut store, &dc2, NOW + 601), "expired_token");
        // unknown, forged, malformed
        let (code, secret) = dc2.split_once('.').unwrap();
        let forged = format!("{code}.{}", b64::encode([7u8; 32]));
        assert_eq!(error_of(&e, &mut store, &forged, NOW + 5), "invalid_grant");
        assert_eq!(
            error_of(&e, &mut store, &format!("BBBBBBBB.{secret}"), NOW + 5),
            "invalid_grant"
        );
        assert_eq!(
            error_of(&e, &mut store, "nonsense", NOW + 5),
            "invalid_grant"
        );
        // the request itself
        let token = |body: &str| {
            call(
                &e,
                &mut Store::default(),
                "POST",
                "/auth/device/token",
                &[],
                body,
                0,
                NOW,
            )
        };
        assert_eq!(json_of(&token("device_code=x"))["error"], "invalid_request");
        assert_eq!(
            json_of(&token("grant_type=password"))["error"],
            "unsupported_grant_type"
        );
        let no_code = format!(
            "grant_type={}",
            form_urlencoded::byte_serialize(DEVICE_GRANT_TYPE.as_bytes()).collect::<String>()
        );
        assert_eq!(json_of(&token(&no_code))["error"], "invalid_request");
        assert_eq!(
            call(&e, &mut store, "GET", "/auth/device/token", &[], "", 0, NOW).status,
            405
        );
        let big = "x".repeat(MAX_FORM_BODY + 1);
        assert_eq!(json_of(&token(&big))["error"], "invalid_request");
        // a field sent twice is refused, whichever value comes first (RFC 6749 §3.1)
        let grant = no_code.clone();
        for body in [
            format!("{grant}&device_code={dc2}&device_code=x"),
            format!("{grant}&device_code=x&device_code={dc2}"),
            format!("{grant}&{grant}&device_code={dc2}"),
        ] {
            let r = token(&body);
            assert_eq!(r.status, 400, "{body}");
            assert_eq!(json_of(&r)["error"], "invalid_request", "{body}");
            assert!(json_of(&r)["error_description"]
                .as_str()
                .unwrap()
                .contains("more than once"));
        }
        let r = call(
            &e,
            &mut store,
            "POST",
            "/auth/device/code",
            &[],
            "client_id=a&client_id=b",
            9,
            NOW,
        );
        assert_eq!(json_of(&r)["error"], "invalid_request");
    }

    #[test]
    fn concurrent_writes_are_retried_on_a_fresh_read_then_slowed() {
        let e = device_engine();
        let mut store = Store::default();
        let (dc, _) = start(&e, &mut store, NOW);
        store.lose = 2;
        assert_eq!(error_of(&e, &mut store, &dc, NOW), "authorization_pending");
        store.lose = 10;
        assert_eq!(error_of(&e, &mut store, &dc, NOW + 100), "slow_down");
    }

    #[test]
    fn the_page_sends_a_browser_to_log_in_and_back() {
        let e = device_engine();
        let mut store = Store::default();
        let r = call(
            &e,
            &mut store,
            "GET",
            "/auth/device?user_code=BCDF-GHJK",
            &[("accept", "text/html")],
            "",
            0,
            NOW,
        );
        assert_eq!(r.status, 302);
        assert_eq!(
            header(&r, "location"),
            Some("/auth/login?rd=%2Fauth%2Fdevice%3Fuser_code%3DBCDF-GHJK")
        );
        // the login accepts that return URL
        assert!(start_login(&e, "rd=%2Fauth%2Fdevice%3Fuser_code%3DBCDF-GHJK", 4).is_ok());
        // an expired session is no login
        let old = logged_in(&e, NOW - 500, false);
        let r = page_for(&e, &mut store, &old, "BCDF-GHJK", NOW);
        assert_eq!(r.status, 302);
        // logged in, no code: the form
        let cookies = logged_in(&e, NOW, false);
        let r = call(
            &e,
            &mut store,
            "GET",
            "/auth/device",
            &[("cookie", &cookies)],
            "",
            0,
            NOW,
        );
        assert_eq!(r.status, 200);
        assert!(r.body.contains("name=user_code"));
        assert_eq!(header(&r, "x-frame-options"), Some("DENY"));
        // a code of the wrong form: said so, not counted
        let r = page_for(&e, &mut store, &cookies, "HELLO", NOW);
        assert_eq!(r.status, 400);
        assert!(store.records.is_empty());
        // two codes in one link (in either spelling of the name): refused, nothing counted
        let (_, uc) = start(&e, &mut store, NOW);
        let records = store.records.len();
        for two in [
            format!("{uc}&user_code=BCDF-GHJK"),
            format!("BCDF-GHJK&user_code={uc}"),
            format!("{uc}&user%5Fcode=BCDF-GHJK"),
        ] {
            let r = page_for(&e, &mut store, &cookies, &two, NOW);
            assert_eq!(r.status, 400, "{two}");
            assert!(r.body.contains("more than one code"), "{two}");
        }
        assert_eq!(
            store.records.len(),
            records,
            "no wrong-code counter was touched"
        );
        // methods
        assert_eq!(
            call(&e, &mut store, "PUT", "/auth/device", &[], "", 0, NOW).status,
            405
        );
    }

    #[test]
    fn the_confirm_page_names_the_request_in_any_spelling() {
        let e = device_engine();
        let mut store = Store::default();
        let (_, uc) = start(&e, &mut store, NOW);
        let cookies = logged_in(&e, NOW, false);
        let typed = uc.to_lowercase().replace('-', "%20");
        let page = page_for(&e, &mut store, &cookies, &typed, NOW);
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("edgegate-cli"));
        assert!(page.body.contains(&uc));
        assert!(page.body.contains("roles: admin"));
        assert!(page.body.contains("value=approve") && page.body.contains("value=deny"));
        assert!(!csrf_of(&page).is_empty());
    }

    #[test]
    fn approval_is_bound_to_the_session_that_saw_the_page_and_is_single_use() {
        let e = long_sessions(json!({}));
        let mut store = Store::default();
        let (dc, uc) = start(&e, &mut store, NOW);
        let alice = logged_in(&e, NOW, false);
        let page = page_for(&e, &mut store, &alice, &uc, NOW);
        let csrf = csrf_of(&page);
        // another session with alice's form token; no token; a token for another code
        let other = logged_in(&e, NOW + 1, false);
        assert_ne!(other, alice);
        assert_eq!(
            answer(&e, &mut store, &other, &uc, &csrf, "approve", NOW + 1).status,
            403
        );
        assert_eq!(
            answer(&e, &mut store, &alice, &uc, "", "approve", NOW).status,
            403
        );
        assert_eq!(
            answer(&e, &mut store, &alice, "BBBB-BBBB", &csrf, "approve", NOW).status,
            403
        );
        // no session at all: 401, no redirect for a POST
        let r = call(
            &e,
            &mut store,
            "POST",
            "/auth/device",
            &[],
            &format!("user_code={uc}&csrf={csrf}&action=approve"),
            0,
            NOW,
        );
        assert_eq!(r.status, 401);
        // neither approve nor deny; both
        assert_eq!(
            answer(&e, &mut store, &alice, &uc, &csrf, "maybe", NOW).status,
            400
        );
        assert_eq!(
            answer(
                &e,
                &mut store,
                &alice,
                &uc,
                &csrf,
                "deny&action=approve",
                NOW
            )
            .status,
            400
        );
        assert_eq!(
            answer(
                &e,
                &mut store,
                &alice,
                &uc,
                &csrf,
                "approve&user_code=BBBBBBBB",
                NOW
            )
            .status,
            400
        );
        // the form token expires with the code
        assert_eq!(
            answer(&e, &mut store, &alice, &uc, &csrf, "approve", NOW + 600).status,
            403
        );
        assert_eq!(
            error_of(&e, &mut store, &dc, NOW + 5),
            "authorization_pending"
        );
        // approve; a second answer is refused, the code is used
        assert_eq!(
            answer(&e, &mut store, &alice, &uc, &csrf, "approve", NOW + 6).status,
            200
        );
        assert_eq!(
            answer(&e, &mut store, &alice, &uc, &csrf, "deny", NOW + 7).status,
            409
        );
        assert_eq!(store.record(&uc.replace('-', ""))["by"], "alice");
        assert_eq!(page_for(&e, &mut store, &alice, &uc, NOW + 8).status, 404);
        // an expired code cannot be approved
        let (_, late) = start(&e, &mut store, NOW + 10);
        let page = page_for(&e, &mut store, &alice, &late, NOW + 10);
        assert_eq!(
            answer(
                &e,
                &mut store,
                &alice,
                &late,
                &csrf_of(&page),
                "approve",
                NOW + 610
            )
            .status,
            403
        );
    }

    #[test]
    fn wrong_codes_are_counted_per_user_and_overall() {
        let e = long_sessions(json!({"max_wrong_codes_per_user": 3, "max_wrong_codes": 5}));
        let mut store = Store::default();
        let (_, uc) = start(&e, &mut store, NOW);
        let alice = logged_in(&e, NOW, false);
        for i in 0..3 {
            let r = page_for(&e, &mut store, &alice, "BBBB-BBBB", NOW + i);
            assert_eq!(r.status, 404, "{}", r.body);
        }
        // alice is over her limit: even the right code waits now
        let r = page_for(&e, &mut store, &alice, &uc, NOW + 3);
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), Some("600"));
        // bob has his own budget, but the overall one runs out after two more
        let bob = {
            let l = e.login().unwrap();
            let mut id = oidc_identity();
            id.subject = "bob".into();
            let set = l
                .establish(e.sessions().unwrap(), &id, None, None, &[3; 12], NOW)
                .unwrap();
            set[0].split(';').next().unwrap().to_string()
        };
        assert_eq!(
            page_for(&e, &mut store, &bob, "BBBB-BBBC", NOW + 4).status,
            404
        );
        assert_eq!(
            page_for(&e, &mut store, &bob, "BBBB-BBBD", NOW + 5).status,
            404
        );
        assert_eq!(page_for(&e, &mut store, &bob, &uc, NOW + 6).status, 429);
        // the window passes (the first code has expired by then: a new one)
        assert_eq!(page_for(&e, &mut store, &alice, &uc, NOW + 601).status, 404);
        let (_, fresh) = start(&e, &mut store, NOW + 601);
        assert_eq!(
            page_for(&e, &mut store, &alice, &fresh, NOW + 601).status,
            200
        );
        // a counter lost to a concurrent writer is counted again, not skipped (bob's window
        // began at NOW + 4: his entry refused by the overall limit took a slot of his too)
        assert_eq!(
            page_for(&e, &mut store, &bob, "BBBB-BBBF", NOW + 602).status,
            429
        );
        let writes = store.writes;
        store.lose = 1;
        assert_eq!(
            page_for(&e, &mut store, &bob, "BBBB-BBBF", NOW + 605).status,
            404
        );
        assert_eq!(store.writes, writes + 2);
    }

    /// Entries sent at once (the host runs their store calls interleaved, as a worker does
    /// across Durable Object round trips): at most the limit are answered, whatever the order.
    #[test]
    fn wrong_codes_sent_at_once_cannot_run_past_the_limit() {
        let e = long_sessions(json!({"max_wrong_codes_per_user": 2, "max_wrong_codes": 1000}));
        let mut store = Store::default();
        let alice = logged_in(&e, NOW, false);
        let cookie = [("cookie", alice.as_str()), ("accept", "text/html")];
        let mut flows: Vec<Result<DeviceStep, u16>> = (0..8u8)
            .map(|i| {
                let path = format!(
                    "/auth/device?user_code=BBBB-BBB{}",
                    char::from(b"BCDFGHJK"[usize::from(i)])
                );
                let req = Request {
                    method: "GET",
                    path: &path,
                    headers: &cookie,
                };
                Ok(e.device(&req, b"", &[1; DEVICE_RANDOM_BYTES], NOW).unwrap())
            })
            .collect();
        // one store call of each flow in turn, until every flow has its reply
        while flows.iter().any(Result::is_ok) {
            for flow in flows.iter_mut().filter(|f| f.is_ok()) {
                let Ok(step) = std::mem::replace(flow, Err(0)) else {
                    continue;
                };
                *flow = match step {
                    DeviceStep::Reply(r) => Err(r.status),
                    DeviceStep::Read(r) => {
                        let found = store.get(r.key(), NOW);
                        Ok(r.resume(&e, found, NOW))
                    }
                    DeviceStep::Write(w) => {
                        let ok = store.cas(&w, NOW);
                        Ok(w.resume(&e, ok, NOW))
                    }
                };
            }
        }
        let statuses: Vec<u16> = flows.into_iter().filter_map(Result::err).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 404).count(),
            2,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 404 || *s == 429),
            "{statuses:?}"
        );
    }

    /// A right code takes no wrong-code slot: the user's and the overall count are given back.
    #[test]
    fn right_codes_are_not_counted_as_wrong() {
        let e = long_sessions(json!({"max_wrong_codes_per_user": 2, "max_wrong_codes": 3}));
        let mut store = Store::default();
        let (_, uc) = start(&e, &mut store, NOW);
        let alice = logged_in(&e, NOW, false);
        for i in 0..5 {
            assert_eq!(page_for(&e, &mut store, &alice, &uc, NOW + i).status, 200);
        }
        let counts: Vec<u64> = store
            .records
            .iter()
            .filter(|(k, _)| k.starts_with(GUESS_PREFIX))
            .map(|(_, (v, _, _))| {
                serde_json::from_str::<Value>(v).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(counts, [0, 0]);
        // and wrong ones still count up to the limit
        assert_eq!(
            page_for(&e, &mut store, &alice, "BBBB-BBBB", NOW + 6).status,
            404
        );
        assert_eq!(
            page_for(&e, &mut store, &alice, "BBBB-BBBC", NOW + 6).status,
            404
        );
        assert_eq!(page_for(&e, &mut store, &alice, &uc, NOW + 7).status, 429);
    }

    #[test]
    fn a_flow_resumed_on_another_engine_fails_closed() {
        let e = device_engine();
        let other = device_engine();
        let req = Request {
            method: "POST",
            path: "/auth/device/code",
            headers: &[],
        };
        let Some(DeviceStep::Write(w)) = e.device(&req, b"", &[5; DEVICE_RANDOM_BYTES], NOW) else {
            panic!("a write first");
        };
        let DeviceStep::Reply(r) = w.resume(&other, true, NOW) else {
            panic!("a reply");
        };
        assert_eq!(r.status, 500);
    }
}
