//! The browser's side of upstream sign-in: "Continue with <provider>" (a form on the login page,
//! so only this site's page can start one) and the callback the provider sends the browser back to.
//! Each handler reads the request, calls [`crate::signin::upstream`] and renders a page or a
//! redirect.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use minijinja::context;

use super::pages::{self, Cookies, csrf_ok, csrf_token, page, see_other};
use super::{bad_form, finish, form, form_expired, form_request, unavailable};
use crate::signin::upstream::{self, CALLBACK_PATH, Callback, UpstreamError};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(CALLBACK_PATH, get(callback))
        .route("/signin/upstream/{name}", post(start))
}

/// The login page's "Continue with" buttons: (name, display name) of each provider.
pub(crate) fn choices(state: &AppState) -> Vec<minijinja::Value> {
    state
        .upstream_providers()
        .map(|p| p.choices())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, display)| context! { name, display })
        .collect()
}

fn state_cookie_name(state: &AppState) -> &'static str {
    if state.settings().issuer.starts_with("https://") {
        "__Host-castellan_upstream"
    } else {
        "castellan_upstream"
    }
}

fn state_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.settings().issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        state_cookie_name(state)
    )
}

/// A refused upstream sign-in: a page that says why.
fn refused(e: &UpstreamError, cookies: &[String]) -> Response {
    refusal_page(e, None, cookies)
}

/// A refused upstream sign-in whose authorization request is known: the page links to a new
/// sign-in for it (or to the account page's).
fn refused_again(e: &UpstreamError, request: &str, cookies: &[String]) -> Response {
    let href = if request.is_empty() {
        "/account".to_owned()
    } else {
        format!("/oauth2/authorize?{request}")
    };
    refusal_page(e, Some(href), cookies)
}

fn refusal_page(e: &UpstreamError, again: Option<String>, cookies: &[String]) -> Response {
    let status = match e {
        UpstreamError::Unavailable => return unavailable(),
        UpstreamError::Unreachable => StatusCode::BAD_GATEWAY,
        UpstreamError::NotAllowed(_)
        | UpstreamError::NoUser(_)
        | UpstreamError::NameTaken(_)
        | UpstreamError::Disabled => StatusCode::FORBIDDEN,
        UpstreamError::UnknownProvider => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    let text = e.to_string();
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(c) => format!("{}{}.", c.to_uppercase(), chars.as_str()),
        None => text,
    };
    let link = again.map(|href| context! { href, text => "Sign in again" });
    page(
        status,
        "message.html",
        context! { title => "Sign-in did not succeed", message => text, error => true, link },
        cookies,
    )
}

async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(mut f) = form(&body) else {
        return bad_form();
    };
    if !csrf_ok(&state, &headers, f.get("csrf").map(String::as_str)) {
        return form_expired();
    }
    let raw = f.remove("request").unwrap_or_default();
    if let Err(resp) = form_request(&state, &raw).await {
        return resp;
    }
    match upstream::start(&state, &name, &raw).await {
        Ok(s) => see_other(
            &s.redirect,
            &[state_cookie(&state, &s.state, upstream::LOGIN_TTL_SECS)],
        ),
        Err(e) => refused(&e, &[]),
    }
}

fn parse_callback(q: &str) -> Option<Callback> {
    let mut cb = Callback::default();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if v.len() > 4096 || !seen.insert(k.to_string()) {
            return None;
        }
        match &*k {
            "state" => cb.state = v.into_owned(),
            "code" => cb.code = Some(v.into_owned()),
            "error" => cb.error = Some(v.into_owned()),
            "iss" => cb.iss = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(cb)
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let clear = vec![state_cookie(&state, "", 0)];
    let Some(cb) = parse_callback(q.as_deref().unwrap_or_default()) else {
        return bad_form();
    };
    if cb.state.is_empty() || cb.state.len() > 128 {
        return refused(&UpstreamError::Expired, &clear);
    }
    if !upstream::state_matches(
        pages::cookie(&headers, state_cookie_name(&state)),
        &cb.state,
    ) {
        return refused(&UpstreamError::OtherBrowser, &clear);
    }
    let row = match upstream::take(&state, &cb).await {
        Ok(r) => r,
        Err(e) => return refused(&e, &clear),
    };
    let new = match upstream::finish(&state, &cb, &row).await {
        Ok(n) => n,
        Err(e) => return refused_again(&e, &row.request, &clear),
    };
    let req = match form_request(&state, &row.request).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut set = clear;
    set.push(Cookies::of(&state).set_session(&new.cookie));
    if new.session.pending_mfa {
        let (csrf, _) = csrf_token(&state, &headers);
        return page(
            StatusCode::OK,
            "totp.html",
            context! { title => "Second factor", csrf, request => row.request },
            &set,
        );
    }
    finish(&state, req.as_ref(), &new.session, &new.user, &set).await
}
