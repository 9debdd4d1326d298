//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the browser's session in the
//! store (so on every replica) and returns only to a registered post-logout URI.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;

use super::pages::{Cookies, csrf_ok, csrf_token, message, page, see_other};
use super::{bad_form, current_session, form, form_expired, unavailable};
use crate::signin::authorize::redirect_with;
use crate::signin::introspection::id_token_hint;
use crate::state::AppState;

const PARAMS: [&str; 4] = [
    "id_token_hint",
    "post_logout_redirect_uri",
    "state",
    "client_id",
];

pub(super) async fn logout_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let Some(params) = form(&Bytes::from(q.unwrap_or_default())) else {
        return bad_form();
    };
    logout(&state, &headers, params, false).await
}

pub(super) async fn logout_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(mut params) = form(&body) else {
        return bad_form();
    };
    if !csrf_ok(&state, &headers, params.remove("csrf").as_deref()) {
        return form_expired();
    }
    logout(&state, &headers, params, true).await
}

async fn logout(
    state: &AppState,
    headers: &HeaderMap,
    params: HashMap<String, String>,
    confirmed: bool,
) -> Response {
    let invalid = |m: &str| {
        message(
            StatusCode::BAD_REQUEST,
            "This sign-out link is not valid",
            m,
        )
    };
    let hint = match params.get("id_token_hint") {
        Some(t) => match id_token_hint(state, t) {
            Some(h) => Some(h),
            None => return invalid("id_token_hint is not an ID token this server issued"),
        },
        None => None,
    };
    let client_id = match (hint.as_ref().map(|(aud, _)| aud), params.get("client_id")) {
        (Some(a), Some(c)) if a != c => return invalid("client_id is not the ID token's audience"),
        (Some(a), _) => Some(a.clone()),
        (None, c) => c.cloned(),
    };
    let client = match &client_id {
        Some(id) => match state.client(id).await {
            Ok(Some(c)) => Some(c),
            Ok(None) => return invalid("no such client"),
            Err(_) => return unavailable(),
        },
        None => None,
    };
    let back = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered = client.as_ref().is_some_and(|c| {
                c.app
                    .post_logout_redirect_uris
                    .split(' ')
                    .any(|r| !r.is_empty() && r == uri)
            });
            if !registered {
                return invalid(
                    "post_logout_redirect_uri is not one registered for this client (they must match exactly)",
                );
            }
            Some(redirect_with(
                uri,
                &[("state", params.get("state").map(String::as_str))],
            ))
        }
    };
    let session = match current_session(state, headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let hinted = hint
        .as_ref()
        .and_then(|(_, sid)| sid.as_ref())
        .is_some_and(|sid| session.as_ref().is_some_and(|(s, _)| &s.sid == sid));
    if let Some((s, _)) = &session
        && !confirmed
        && !hinted
    {
        // Without proof that the app asking is the one this session signed in to, the person
        // confirms (a link on another site must not sign them out).
        let (csrf, set) = csrf_token(state, headers);
        let kept: Vec<(&str, &String)> = PARAMS
            .iter()
            .filter_map(|k| params.get(*k).map(|v| (*k, v)))
            .collect();
        let _ = s;
        return page(
            StatusCode::OK,
            "logout.html",
            context! {
                title => "Sign out",
                app => client.as_ref().map(|c| c.name.clone()),
                csrf,
                params => kept,
            },
            &set.into_iter().collect::<Vec<_>>(),
        );
    }
    if let Some((s, _)) = &session
        && (state
            .store()
            .end_session(&s.sid, state.now())
            .await
            .is_err()
            || crate::audit::events::signin(
                state,
                "signin.logout",
                Some(&s.user_id),
                None,
                Ok(&s.sid),
            )
            .await
            .is_err())
    {
        return unavailable();
    }
    let clear = [Cookies::of(state).clear_session()];
    match back {
        Some(url) => see_other(&url, &clear),
        None => {
            let mut r = message(StatusCode::OK, "Signed out", "You are signed out.");
            if let Ok(v) = axum::http::HeaderValue::from_str(&clear[0]) {
                r.headers_mut().append(axum::http::header::SET_COOKIE, v);
            }
            r
        }
    }
}
