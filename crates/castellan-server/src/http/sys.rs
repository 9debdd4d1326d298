//! What every replica answers about itself and its keys: the JWKS, discovery, health, readiness,
//! metrics and `/v1/sys/status`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::auth::authorize;
use super::error::ApiError;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/sys/status", get(status))
}

async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ring = state.ring();
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == ring.etag || t.trim() == "*")
        });
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            ring.jwks.clone(),
        )
            .into_response()
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, state.jwks_cache_control().clone());
    resp.headers_mut().insert(header::ETAG, ring.etag.clone());
    resp
}

async fn discovery(State(state): State<AppState>) -> Response {
    let iss = &state.settings().issuer;
    let ring = state.ring();
    let mut algs: Vec<&str> = ring
        .ring
        .keys()
        .iter()
        .map(|k| k.key.alg().as_str())
        .collect();
    algs.sort_unstable();
    algs.dedup();
    // Exactly what exists: the endpoints, grants, methods and algorithms this server implements.
    let doc = json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "authorization_endpoint": format!("{iss}/oauth2/authorize"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "userinfo_endpoint": format!("{iss}/oauth2/userinfo"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "end_session_endpoint": format!("{iss}/oauth2/logout"),
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "scopes_supported": castellan_core::signin::OIDC_SCOPES,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "amr",
            "preferred_username", "email", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "access_token_signing_alg_values_supported": algs,
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(doc)).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let ring = state.ring();
    match ring.ring.signing_key(state.now()) {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "no signing key"})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let ring = state.ring();
    let kid = ring
        .ring
        .signing_key(state.now())
        .map(|k| k.key.kid().to_owned())
        .unwrap_or_default();
    let mut body = state.metrics().render(
        ring.ring.fingerprint(),
        &kid,
        ring.ring.keys().len(),
        state.store().outage().is_none(),
    );
    body.push_str(&state.audit().render_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers, None).await?;
    let ring = state.ring();
    let kid = ring
        .ring
        .signing_key(state.now())
        .map(|k| k.key.kid().to_owned())
        .ok();
    let outage = state.store().outage();
    Ok(Json(json!({
        "replica_id": state.settings().replica_id,
        "store": state.store().kind().as_str(),
        "issuer": state.settings().issuer,
        "keyring_fingerprint": ring.ring.fingerprint(),
        "current_kid": kid,
        "keys": ring.ring.keys().len(),
        "store_reachable": outage.is_none(),
        "store_outage": outage.map(|o| json!({"since": o.since, "cause": o.cause})),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response())
}
