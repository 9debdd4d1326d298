//! The one place every `/v1` call is recorded: a middleware on the router. It knows the route
//! template and method, the source address, the path parameters and the status; the caller comes from
//! [`crate::http::authorize`] (which notes it in a task-local slot of the request); a handler may name
//! the object better (a secret's version, a certificate's serial) with an [`AuditNote`] in its
//! response's extensions. Endpoints added later are recorded without edits of their own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use castellan_core::audit::Outcome;
use castellan_core::token::AccessClaims;

use super::ApiError;
use crate::audit::Pending;
use crate::state::AppState;

/// What a handler adds to its call's audit event: a better name of the object and details (by
/// identifiers only: never a value, a password, a token or key bytes).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// Replaces the object named from the path parameters.
    pub object: Option<String>,
    /// Details, a JSON object.
    pub detail: Option<serde_json::Value>,
}

impl AuditNote {
    /// A note naming the object.
    pub fn object(object: impl Into<String>) -> Self {
        Self {
            object: Some(object.into()),
            detail: None,
        }
    }
}

/// Who called, as [`crate::http::authorize`] found it.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    actor: String,
    jti: String,
}

tokio::task_local! {
    static CALLER: Arc<Mutex<Option<Caller>>>;
}

/// Notes the caller of the request being served (a no-op outside a recorded request).
pub(crate) fn note_caller(claims: &AccessClaims) {
    let actor = if claims.sub == claims.client_id {
        format!("client:{}", claims.client_id)
    } else {
        format!("user:{} via client:{}", claims.sub, claims.client_id)
    };
    let _ = CALLER.try_with(|slot| {
        if let Ok(mut s) = slot.lock() {
            *s = Some(Caller {
                actor,
                jti: claims.jti.clone(),
            });
        }
    });
}

/// Whether an answer that cannot be recorded must not be given: the call changes state or reads
/// secrets (any method but GET/HEAD/OPTIONS, and GETs of routes under `/v1/secret…`).
pub fn fail_closed_route(method: &Method, route: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || route.starts_with("/v1/secret")
}

/// Error bodies read for the reason, at most.
const ERROR_BODY: usize = 16 * 1024;

/// The middleware (see the module's notes).
pub(crate) async fn record_v1(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auditor = state.audit();
    let route = match req.extensions().get::<MatchedPath>() {
        Some(p) if p.as_str().starts_with("/v1/") && auditor.settings().enabled => {
            p.as_str().to_owned()
        }
        _ => return next.run(req).await,
    };
    let method = req.method().clone();
    let action = format!("{method} {route}");
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |ConnectInfo(a)| a.ip().to_string());
    let (mut parts, body) = req.into_parts();
    let object =
        match <RawPathParams as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &state,
        )
        .await
        {
            Ok(params) => params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => String::new(),
        };
    let req = Request::from_parts(parts, body);
    let closed = auditor.settings().fail_closed && fail_closed_route(&method, &route);
    // While the store is known to be down the handler answers `store_unavailable` itself.
    if closed
        && state.store().outage().is_none()
        && let Some(cause) = auditor.failing()
    {
        return unavailable(&cause);
    }
    let slot = Arc::new(Mutex::new(None));
    let resp = CALLER.scope(slot.clone(), next.run(req)).await;
    let caller = slot.lock().ok().and_then(|mut s| s.take());
    let status = resp.status();
    let (resp, reason) = if status.is_client_error() || status.is_server_error() {
        error_reason(resp).await
    } else {
        (resp, String::new())
    };
    let result = match status.as_u16() {
        200..=399 => Outcome::Allowed,
        401 | 403 => Outcome::Denied,
        _ => Outcome::Failed,
    };
    let note = resp
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default();
    let mut detail = match note.detail {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    detail.insert("status".into(), status.as_u16().into());
    let (actor, jti) = match caller {
        Some(c) => (c.actor, Some(c.jti)),
        None => ("anonymous".to_owned(), None),
    };
    if let Some(jti) = jti {
        detail.insert("jti".into(), jti.into());
    }
    let p = Pending {
        actor,
        source,
        action,
        object: note.object.unwrap_or(object),
        result: Some(result),
        reason,
        detail: serde_json::Value::Object(detail).to_string(),
    };
    // An action that failed or was refused did nothing: its own answer stands.
    if closed && result == Outcome::Allowed {
        match auditor.record_acked(p).await {
            Ok(()) => resp,
            Err(e) => unavailable(&e.0),
        }
    } else {
        auditor.record(p);
        resp
    }
}

/// 503 naming why the trail cannot record.
fn unavailable(cause: &str) -> Response {
    let mut r = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!("refused: the audit trail cannot record this action ({cause}); retry later"),
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}

/// The API error's `code: message` of an error answer (the answer is rebuilt from the bytes read).
async fn error_reason(resp: Response) -> (Response, String) {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ERROR_BODY).await else {
        return (
            Response::from_parts(parts, Body::empty()),
            "the error answer was too large to read".into(),
        );
    };
    let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            match e {
                serde_json::Value::Object(_) => Some(format!(
                    "{}: {}",
                    e.get("code")?.as_str()?,
                    e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                )),
                serde_json::Value::String(s) => Some(s.clone()),
                _ => None,
            }
        })
        .unwrap_or_else(|| format!("status {}", parts.status.as_u16()));
    (Response::from_parts(parts, Body::from(bytes)), reason)
}
