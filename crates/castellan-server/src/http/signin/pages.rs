//! The sign-in pages: server-rendered HTML (minijinja, HTML-escaped by the engine), the security
//! headers every page carries, and the cookies (session and CSRF).

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use castellan_core::secret;
use minijinja::Environment;
use subtle::ConstantTimeEq;

use crate::state::AppState;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Names end in .html: minijinja escapes every value for HTML.
    for (name, text) in [
        ("base.html", include_str!("../../../templates/base.html")),
        ("login.html", include_str!("../../../templates/login.html")),
        ("totp.html", include_str!("../../../templates/totp.html")),
        (
            "account.html",
            include_str!("../../../templates/account.html"),
        ),
        (
            "message.html",
            include_str!("../../../templates/message.html"),
        ),
        (
            "logout.html",
            include_str!("../../../templates/logout.html"),
        ),
    ] {
        if let Err(e) = env.add_template(name, text) {
            tracing::error!("template {name}: {e}");
        }
    }
    env
});

/// The stylesheet (served from `/static/castellan.css`, so the CSP needs no inline style).
pub(crate) const CSS: &str = include_str!("../../../templates/castellan.css");

/// Every page: no framing, no inline script or style, nothing cached, no referrer.
pub(crate) fn secure_headers(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
}

/// A rendered page.
pub(crate) fn page(
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
    cookies: &[String],
) -> Response {
    let html = TEMPLATES.get_template(template).and_then(|t| t.render(ctx));
    let (status, body) = match html {
        Ok(b) => (status, b),
        Err(e) => {
            tracing::error!("rendering {template}: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>The page could not be shown.</p>".to_owned(),
            )
        }
    };
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    secure_headers(resp.headers_mut());
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// A message page (errors that must not redirect, confirmations).
pub(crate) fn message(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        "message.html",
        minijinja::context! { title, message, error => status.is_client_error() || status.is_server_error() },
        &[],
    )
}

/// `303 See Other` to `location`, with cookies.
pub(crate) fn see_other(location: &str, cookies: &[String]) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(resp.headers_mut());
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The cookie names and attributes: `__Host-` and `Secure` when the issuer is HTTPS.
pub(crate) struct Cookies {
    secure: bool,
}

impl Cookies {
    pub(crate) fn of(state: &AppState) -> Self {
        Self {
            secure: state.settings().issuer.starts_with("https://"),
        }
    }

    pub(crate) fn session_name(&self) -> &'static str {
        if self.secure {
            "__Host-castellan_session"
        } else {
            "castellan_session"
        }
    }

    pub(crate) fn csrf_name(&self) -> &'static str {
        if self.secure {
            "__Host-castellan_csrf"
        } else {
            "castellan_csrf"
        }
    }

    fn attrs(&self) -> &'static str {
        if self.secure {
            "; Path=/; HttpOnly; SameSite=Lax; Secure"
        } else {
            "; Path=/; HttpOnly; SameSite=Lax"
        }
    }

    /// `Set-Cookie` for the session (a browser-session cookie: it ends when the store's session does).
    pub(crate) fn set_session(&self, value: &str) -> String {
        format!("{}={value}{}", self.session_name(), self.attrs())
    }

    /// `Set-Cookie` that removes the session cookie.
    pub(crate) fn clear_session(&self) -> String {
        format!("{}={}; Max-Age=0", self.session_name(), self.attrs())
    }

    /// `Set-Cookie` for a CSRF token.
    pub(crate) fn set_csrf(&self, value: &str) -> String {
        format!("{}={value}{}", self.csrf_name(), self.attrs())
    }
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token of this browser (the cookie's, or a new one with the `Set-Cookie` to send).
/// Forms carry it in a hidden field; a POST is accepted only when the field equals the cookie
/// (double submit; the cookie is `SameSite=Lax` and `HttpOnly`, so another site can neither send nor
/// read it).
pub(crate) fn csrf_token(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    let c = Cookies::of(state);
    if let Some(v) = cookie(headers, c.csrf_name()).filter(|v| v.len() == 43) {
        return (v.to_owned(), None);
    }
    let v = secret::generate_secret()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let set = c.set_csrf(&v);
    (v, Some(set))
}

/// Whether a form's CSRF field matches the browser's cookie (constant time).
pub(crate) fn csrf_ok(state: &AppState, headers: &HeaderMap, field: Option<&str>) -> bool {
    let c = Cookies::of(state);
    match (cookie(headers, c.csrf_name()), field) {
        (Some(cookie), Some(field)) if cookie.len() == 43 => {
            bool::from(cookie.as_bytes().ct_eq(field.as_bytes()))
        }
        _ => false,
    }
}
