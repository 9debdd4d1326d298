//! The browser's side of sign-in: the authorization endpoint, the login form, the account page,
//! logout, and userinfo. Each handler reads the request, calls [`crate::signin`] and renders a page
//! or a redirect; none holds policy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use minijinja::context;
use zeroize::Zeroizing;

use crate::signin::authorize::{self, AuthorizeError, AuthorizeRequest, Decision};
use crate::signin::introspection::{self, UserinfoError};
use crate::signin::login::{self, LoginError};
use crate::state::AppState;
use crate::users::user_info;

mod logout;
pub(crate) mod pages;
mod upstream;

use pages::{Cookies, csrf_ok, csrf_token, message, page, see_other};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2/authorize", get(authorize_get).post(authorize_post))
        .route("/signin", post(signin))
        .route("/signin/totp", post(signin_totp))
        .route("/account", get(account))
        .route("/account/totp", post(account_totp))
        .route(
            "/oauth2/logout",
            get(logout::logout_get).post(logout::logout_post),
        )
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/static/castellan.css", get(css))
        .merge(upstream::routes())
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::CSS,
    )
        .into_response()
}

/// A form body: each parameter once, UTF-8.
pub(crate) fn form(body: &Bytes) -> Option<HashMap<String, String>> {
    std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    Some(out)
}

fn bad_form() -> Response {
    message(
        StatusCode::BAD_REQUEST,
        "Something went wrong",
        "The form could not be read. Go back and try again.",
    )
}

fn peer(connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<IpAddr> {
    connect.map(|Extension(ConnectInfo(a))| a.ip())
}

/// The browser's live session, if any.
async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(castellan_store::SessionRow, castellan_store::UserRow)>, Response> {
    let name = Cookies::of(state).session_name();
    let Some(cookie) = pages::cookie(headers, name) else {
        return Ok(None);
    };
    login::session_of(state, cookie)
        .await
        .map_err(|_| unavailable())
}

fn unavailable() -> Response {
    let mut r = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "Sign-in is not available right now. Try again in a moment.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The authorization request a form carries again (`None`: the account page's sign-in), checked
/// anew.
async fn form_request(state: &AppState, raw: &str) -> Result<Option<AuthorizeRequest>, Response> {
    if raw.is_empty() {
        return Ok(None);
    }
    authorize::check(state, raw)
        .await
        .map(Some)
        .map_err(|e| refusal(state, e))
}

/// A form whose CSRF field does not match the browser's cookie.
pub(crate) fn form_expired() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "The form has expired",
        "The form was not sent from this site's page, or it has expired. Go back, reload the page and try again.",
    )
}

/// A refused authorization request: back to the app when its redirect URI is trusted, else a page.
fn refusal(state: &AppState, e: AuthorizeError) -> Response {
    if let Some(url) = authorize::error_redirect(state, &e) {
        return see_other(&url, &[]);
    }
    match e {
        AuthorizeError::Page(m) => message(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            &m,
        ),
        _ => unavailable(),
    }
}

async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    authorize_raw(&state, &headers, q.unwrap_or_default()).await
}

async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match std::str::from_utf8(&body) {
        Ok(raw) => authorize_raw(&state, &headers, raw.to_owned()).await,
        Err(_) => bad_form(),
    }
}

async fn authorize_raw(state: &AppState, headers: &HeaderMap, raw: String) -> Response {
    let req = match authorize::check(state, &raw).await {
        Ok(r) => r,
        Err(e) => return refusal(state, e),
    };
    let session = match current_session(state, headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match authorize::decide(state, &req, session.as_ref().map(|(s, u)| (s, u))).await {
        Ok(Decision::Redirect(url)) => see_other(&url, &[]),
        Ok(Decision::Login) => login_page(state, headers, Some(&req), None, StatusCode::OK),
        Err(e) => refusal(state, e),
    }
}

/// The login page, for an authorization request (or for the account page when `None`).
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    req: Option<&AuthorizeRequest>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    login_page_for(state, headers, req, error, status, None)
}

/// The login page with the name already typed (after a failed attempt the person types only the
/// password again).
fn login_page_for(
    state: &AppState,
    headers: &HeaderMap,
    req: Option<&AuthorizeRequest>,
    error: Option<&str>,
    status: StatusCode,
    typed_name: Option<&str>,
) -> Response {
    let (csrf, set) = csrf_token(state, headers);
    let cookies: Vec<String> = set.into_iter().collect();
    page(
        status,
        "login.html",
        context! {
            title => "Sign in",
            app => req.map(|r| r.client.name.clone()),
            error,
            csrf,
            request => req.map(|r| r.raw.clone()).unwrap_or_default(),
            username => typed_name
                .map(str::to_owned)
                .or_else(|| req.and_then(|r| r.login_hint.clone()))
                .unwrap_or_default(),
            providers => upstream::choices(state),
        },
        &cookies,
    )
}

async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let Some(mut f) = form(&body) else {
        return bad_form();
    };
    if !csrf_ok(&state, &headers, f.get("csrf").map(String::as_str)) {
        return form_expired();
    }
    let raw = f.remove("request").unwrap_or_default();
    let req = match form_request(&state, &raw).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let name = f.remove("username").unwrap_or_default();
    let password = Zeroizing::new(f.remove("password").unwrap_or_default());
    let outcome = login::password(&state, name.trim(), password, peer(connect), |u| {
        u.totp_sealed.is_some()
    })
    .await;
    let new = match outcome {
        Ok(n) => n,
        Err(e) => {
            let status = match e {
                LoginError::Failed => StatusCode::UNAUTHORIZED,
                LoginError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                LoginError::Disabled => StatusCode::FORBIDDEN,
                LoginError::Unavailable => return unavailable(),
            };
            let typed: String = name.trim().chars().take(64).collect();
            let mut r = login_page_for(
                &state,
                &headers,
                req.as_ref(),
                Some(&e.to_string()),
                status,
                Some(&typed),
            );
            if let LoginError::Throttled(secs) = e
                && let Ok(v) = HeaderValue::from_str(&secs.to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    };
    let cookies = Cookies::of(&state);
    let set = vec![cookies.set_session(&new.cookie)];
    if new.session.pending_mfa {
        let (csrf, _) = csrf_token(&state, &headers);
        return page(
            StatusCode::OK,
            "totp.html",
            context! { title => "Second factor", csrf, request => raw },
            &set,
        );
    }
    finish(&state, req.as_ref(), &new.session, &new.user, &set).await
}

/// After a complete sign-in: the code for the app, or the account page.
pub(crate) async fn finish(
    state: &AppState,
    req: Option<&AuthorizeRequest>,
    session: &castellan_store::SessionRow,
    user: &castellan_store::UserRow,
    cookies: &[String],
) -> Response {
    let Some(req) = req else {
        return see_other("/account", cookies);
    };
    if authorize::mfa_required(&req.client, user) && !session.amr.split(' ').any(|m| m == "otp") {
        let mut r = message(
            StatusCode::FORBIDDEN,
            "A second factor is required",
            &format!(
                "{} asks for a second factor. Set up an authenticator app on your account page, then sign in again.",
                req.client.name
            ),
        );
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        return r;
    }
    match authorize::issue_code(state, req, session, user).await {
        Ok(url) => see_other(&url, cookies),
        Err(e) => refusal(state, e),
    }
}

async fn signin_totp(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(mut f) = form(&body) else {
        return bad_form();
    };
    if !csrf_ok(&state, &headers, f.get("csrf").map(String::as_str)) {
        return form_expired();
    }
    let raw = f.remove("request").unwrap_or_default();
    let req = match form_request(&state, &raw).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let cookies = Cookies::of(&state);
    let Some(cookie) = pages::cookie(&headers, cookies.session_name()) else {
        return login_page(&state, &headers, req.as_ref(), None, StatusCode::OK);
    };
    let code = f.remove("code").unwrap_or_default();
    match crate::signin::account::second_factor(&state, cookie, &code).await {
        Ok(new) => {
            let set = vec![cookies.set_session(&new.cookie)];
            finish(&state, req.as_ref(), &new.session, &new.user, &set).await
        }
        Err(LoginError::Unavailable) => unavailable(),
        Err(e) => {
            let status = match e {
                LoginError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let msg = match e {
                LoginError::Throttled(_) => e.to_string(),
                _ => "That code is not right. Try the code your app shows now.".to_owned(),
            };
            let (csrf, _) = csrf_token(&state, &headers);
            page(
                status,
                "totp.html",
                context! { title => "Second factor", csrf, request => raw, error => msg },
                &[],
            )
        }
    }
}

/// A QR code of `text` as inline SVG (no script, no external image).
fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
    )
}

async fn account(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let session = match current_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some((_, u)) = session.filter(|(s, _)| !s.pending_mfa) else {
        return login_page(&state, &headers, None, None, StatusCode::OK);
    };
    let enrol = q.as_deref() == Some("enrol=totp");
    account_page(&state, &headers, &u, enrol, None, None, None)
}

#[allow(clippy::too_many_arguments)]
fn account_page(
    state: &AppState,
    headers: &HeaderMap,
    u: &castellan_store::UserRow,
    enrol: bool,
    notice: Option<&str>,
    error: Option<&str>,
    recovery_codes: Option<Vec<String>>,
) -> Response {
    let (csrf, set) = csrf_token(state, headers);
    let cookies: Vec<String> = set.into_iter().collect();
    let offer = if enrol {
        match crate::signin::account::offer(u) {
            Ok(o) => Some(context! {
                secret => o.secret.as_str(),
                qr => minijinja::Value::from_safe_string(qr_svg(&o.uri).unwrap_or_default()),
            }),
            Err(_) => return unavailable(),
        }
    } else {
        None
    };
    page(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "account.html",
        context! {
            title => "Your account",
            user => user_info(u),
            csrf,
            enrol => offer,
            notice,
            error,
            recovery_codes,
        },
        &cookies,
    )
}

async fn account_totp(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form(&body) else {
        return bad_form();
    };
    if !csrf_ok(&state, &headers, f.get("csrf").map(String::as_str)) {
        return form_expired();
    }
    let session = match current_session(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some((_, u)) = session.filter(|(s, _)| !s.pending_mfa) else {
        return login_page(&state, &headers, None, None, StatusCode::OK);
    };
    let secret = f.get("secret").map(String::as_str).unwrap_or_default();
    let code = f.get("code").map(String::as_str).unwrap_or_default();
    match crate::signin::account::enrol(&state, &u, secret, code).await {
        Ok(codes) => {
            let u = match state.store().user(&u.user_id).await {
                Ok(Some(u)) => u,
                _ => return unavailable(),
            };
            account_page(
                &state,
                &headers,
                &u,
                false,
                Some("Your authenticator app is set up: it is asked for at every sign-in."),
                None,
                Some(codes),
            )
        }
        Err(crate::error::ServiceError::Invalid(m)) => {
            account_page(&state, &headers, &u, true, None, Some(&m), None)
        }
        Err(_) => unavailable(),
    }
}

async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let refused = |m: &str| {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid_token", "error_description": m})),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            m.replace('"', "'")
        )) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    let Some(token) = token else {
        return refused("a Bearer access token is required");
    };
    match introspection::userinfo(&state, token.trim()).await {
        Ok(claims) => ([(header::CACHE_CONTROL, "no-store")], Json(claims)).into_response(),
        Err(UserinfoError::InvalidToken(m)) => refused(m),
        Err(UserinfoError::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(serde_json::json!({"error": "temporarily_unavailable"})),
        )
            .into_response(),
    }
}
