//! The authorization endpoint's use case: check the request (OpenID Connect Core §3.1.2.1, OAuth 2.1
//! rules), then either issue a code for the browser's session or ask the person to sign in.
//!
//! Until the client and its redirect URI are known to be right, a refusal is an error page and never
//! a redirect (RFC 6749 §4.1.2.1): an unregistered or altered redirect URI must not make Castellan an
//! open redirector. After that, refusals go back to the app as `error=` on its redirect URI.

use std::collections::HashMap;
use std::sync::Arc;

use castellan_core::signin::{OIDC_SCOPES, pkce, redirect};
use castellan_store::{ClientRow, CodeRow, SessionRow, UserRow};
use url::Url;

use super::opaque;
use crate::state::AppState;
use castellan_core::token::valid_scope_token;

/// `prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Use the session if there is one.
    Default,
    /// Never show a page: a code, or `login_required`.
    None,
    /// Sign in again whatever the session.
    Login,
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The app.
    pub client: Arc<ClientRow>,
    /// Its redirect URI (registered, matched exactly).
    pub redirect_uri: String,
    /// `state`, passed back.
    pub state: Option<String>,
    /// `nonce`, put into the ID token.
    pub nonce: Option<String>,
    /// Granted scopes (space-separated).
    pub scope: String,
    /// PKCE `S256` challenge.
    pub code_challenge: String,
    /// `prompt`.
    pub prompt: Prompt,
    /// `max_age`, seconds.
    pub max_age: Option<i64>,
    /// `login_hint`, shown in the name field.
    pub login_hint: Option<String>,
    /// The request as it came (a query string), for the login form to send again.
    pub raw: String,
}

/// A refused authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: an error page, no redirect.
    Page(String),
    /// Sent back to the app.
    Redirect {
        /// Where.
        redirect_uri: String,
        /// RFC 6749 §4.1.2.1 code.
        error: &'static str,
        /// Plain words.
        description: String,
        /// The request's `state`.
        state: Option<String>,
    },
    /// The store cannot answer now.
    Unavailable,
}

/// What the endpoint does with a checked request.
#[derive(Debug)]
pub enum Decision {
    /// Send the browser back with a code (this URL).
    Redirect(String),
    /// Show the login page.
    Login,
}

const MAX_PARAM: usize = 2048;

/// Parses and checks an authorization request (a query string or form body).
pub async fn check(state: &AppState, raw: &str) -> Result<AuthorizeRequest, AuthorizeError> {
    let page = |m: &str| AuthorizeError::Page(m.to_owned());
    if raw.len() > 8192 {
        return Err(page("the authorization request is too long"));
    }
    let mut p: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if v.len() > MAX_PARAM {
            return Err(page(&format!(
                "parameter `{}` is too long",
                k.escape_debug()
            )));
        }
        if p.insert(k.to_string(), v.to_string()).is_some() {
            return Err(page(&format!(
                "parameter `{}` is repeated",
                k.escape_debug()
            )));
        }
    }
    let client_id = p
        .get("client_id")
        .ok_or_else(|| page("client_id is missing"))?;
    let client = state
        .client(client_id)
        .await
        .map_err(|_| AuthorizeError::Unavailable)?
        .ok_or_else(|| page("no such client"))?;
    let redirect_uri = p
        .get("redirect_uri")
        .ok_or_else(|| page("redirect_uri is missing"))?;
    if !redirect::matches(
        client
            .app
            .redirect_uris
            .split(' ')
            .filter(|s| !s.is_empty()),
        redirect_uri,
    ) {
        return Err(page(
            "redirect_uri is not one registered for this client (they must match exactly)",
        ));
    }
    let st = p.get("state").cloned();
    let back = |error: &'static str, description: &str| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description: description.to_owned(),
        state: st.clone(),
    };
    if !client.app.allows_grant("authorization_code") {
        return Err(back(
            "unauthorized_client",
            "this client is not registered for the authorization_code grant",
        ));
    }
    if p.contains_key("request") || p.contains_key("request_uri") {
        return Err(back(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    match p.get("response_type").map(String::as_str) {
        Some("code") => {}
        None => return Err(back("invalid_request", "response_type is missing")),
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if let Some(m) = p.get("response_mode")
        && m != "query"
    {
        return Err(back(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    let challenge = p.get("code_challenge").ok_or_else(|| {
        back(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        )
    })?;
    if p.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(back(
            "invalid_request",
            "code_challenge_method must be S256 (plain is not accepted)",
        ));
    }
    if !pkce::valid_challenge(challenge) {
        return Err(back(
            "invalid_request",
            "code_challenge is not a base64url SHA-256",
        ));
    }
    let scope = granted_scope(&client, p.get("scope").map(String::as_str))
        .map_err(|m| back("invalid_scope", &m))?;
    let nonce = p.get("nonce").cloned();
    let prompt = match p.get("prompt").map(String::as_str) {
        None | Some("") | Some("consent") => Prompt::Default,
        Some("none") => Prompt::None,
        Some("login") => Prompt::Login,
        Some("select_account") => Prompt::Login,
        Some(_) => {
            return Err(back(
                "invalid_request",
                "prompt must be none, login or consent",
            ));
        }
    };
    let max_age = match p.get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| back("invalid_request", "max_age must be a number of seconds"))?,
        ),
    };
    Ok(AuthorizeRequest {
        client,
        redirect_uri: redirect_uri.clone(),
        state: st,
        nonce,
        scope,
        code_challenge: challenge.clone(),
        prompt,
        max_age,
        login_hint: p.get("login_hint").cloned(),
        raw: raw.to_owned(),
    })
}

/// The scopes asked for, each one the client was registered with or an OpenID Connect scope; the
/// client's own scopes and `openid` when none are asked for.
fn granted_scope(client: &ClientRow, asked: Option<&str>) -> Result<String, String> {
    let Some(asked) = asked.filter(|s| !s.is_empty()) else {
        let mut all = vec!["openid"];
        all.extend(client.scopes.split(' ').filter(|s| !s.is_empty()));
        return Ok(all.join(" "));
    };
    let mut out: Vec<&str> = Vec::new();
    for s in asked.split(' ').filter(|s| !s.is_empty()) {
        if !valid_scope_token(s) {
            return Err("the scope parameter is malformed".into());
        }
        if !OIDC_SCOPES.contains(&s) && !client.scopes.split(' ').any(|c| c == s) {
            return Err(format!("the client may not ask for `{s}`"));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out.join(" "))
}

/// Whether a live session is good enough for this request without signing in again.
pub fn session_suffices(req: &AuthorizeRequest, s: &SessionRow, user: &UserRow, now: i64) -> bool {
    s.ended_at.is_none()
        && !s.pending_mfa
        && s.expires_at > now
        && user.disabled_at.is_none()
        && req.prompt != Prompt::Login
        && req.max_age.is_none_or(|m| now - s.auth_time <= m)
        && (!mfa_required(&req.client, user) || s.amr.split(' ').any(|m| m == "otp"))
}

/// Whether this user signing in to this app needs a second factor.
pub fn mfa_required(client: &ClientRow, user: &UserRow) -> bool {
    client.app.require_mfa || user.totp_required
}

/// What to do for a checked request, given the browser's session (already read).
pub async fn decide(
    state: &AppState,
    req: &AuthorizeRequest,
    session: Option<(&SessionRow, &UserRow)>,
) -> Result<Decision, AuthorizeError> {
    let now = state.now();
    match session {
        Some((s, u)) if session_suffices(req, s, u, now) => {
            issue_code(state, req, s, u).await.map(Decision::Redirect)
        }
        _ if req.prompt == Prompt::None => Err(AuthorizeError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            error: "login_required",
            description: "the user must sign in".into(),
            state: req.state.clone(),
        }),
        _ => Ok(Decision::Login),
    }
}

/// Stores a code for this session and returns the redirect that carries it (with `state` and, per
/// RFC 9207, `iss`).
pub async fn issue_code(
    state: &AppState,
    req: &AuthorizeRequest,
    s: &SessionRow,
    user: &UserRow,
) -> Result<String, AuthorizeError> {
    let now = state.now();
    let (code, code_hash) = opaque().map_err(|_| AuthorizeError::Unavailable)?;
    let row = CodeRow {
        code_hash,
        client_id: req.client.client_id.clone(),
        user_id: user.user_id.clone(),
        sid: s.sid.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        scope: req.scope.clone(),
        nonce: req.nonce.clone(),
        auth_time: s.auth_time,
        amr: s.amr.clone(),
        created_at: now,
        expires_at: now + state.settings().signin.code_ttl_secs,
        used_at: None,
        grant_id: None,
    };
    state
        .store()
        .add_code(&row)
        .await
        .map_err(|_| AuthorizeError::Unavailable)?;
    Ok(redirect_with(
        &req.redirect_uri,
        &[
            ("code", Some(code.as_str())),
            ("state", req.state.as_deref()),
            ("iss", Some(state.settings().issuer.as_str())),
        ],
    ))
}

/// `uri` with these query parameters added (after any it has).
pub fn redirect_with(uri: &str, params: &[(&str, Option<&str>)]) -> String {
    match Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    if let Some(v) = v {
                        q.append_pair(k, v);
                    }
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

/// The redirect of a refusal sent back to the app.
pub fn error_redirect(state: &AppState, e: &AuthorizeError) -> Option<String> {
    match e {
        AuthorizeError::Redirect {
            redirect_uri,
            error,
            description,
            state: st,
        } => Some(redirect_with(
            redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", st.as_deref()),
                ("iss", Some(state.settings().issuer.as_str())),
            ],
        )),
        _ => None,
    }
}
