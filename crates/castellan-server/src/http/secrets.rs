//! `/v1/secrets`.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use castellan_core::secret_store::{self, Access};
use serde_json::json;

use super::ApiPath;
use super::audit_layer::AuditNote;
use super::auth::{authorize, authorize_secret};
use super::error::{ApiError, json_rejection};
use crate::secrets::{self, SecretJson};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/secrets", get(secrets_list)).route(
        "/v1/secrets/{*name}",
        get(secrets_get).put(secrets_put).delete(secrets_delete),
    )
}

/// The secrets the token may read: all with `secrets:read`, else those its prefix scopes cover.
async fn secrets_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = authorize(&state, &headers, None).await?;
    if !secret_store::scopes_allow_any(&claims.scope, Access::Read) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token lacks the `secrets:read` scope (or a `secrets:read:PREFIX`)",
        ));
    }
    let list: Vec<_> = secrets::list(state.store())
        .await?
        .into_iter()
        .filter(|s| secret_store::scopes_allow(&claims.scope, Access::Read, &s.name))
        .collect();
    Ok(Json(json!({"secrets": list})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    version: Option<i64>,
}

async fn secrets_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    query: Result<axum::extract::Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let claims = authorize_secret(&state, &headers, Access::Read, &name).await?;
    let q = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let s = secrets::get(state.store(), state.master(), &name, q.version).await?;
    tracing::info!(secret = %s.meta.name, version = s.meta.version, client_id = %claims.client_id, "read a secret");
    let note = AuditNote::object(format!("secret {} v{}", s.meta.name, s.meta.version));
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Extension(note),
        Json(SecretJson::from(&s)),
    )
        .into_response())
}

async fn secrets_put(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Result<Json<secrets::PutSecret>, JsonRejection>,
) -> Result<Response, ApiError> {
    let claims = authorize_secret(&state, &headers, Access::Write, &name).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let meta = secrets::put(
        state.store(),
        state.master(),
        &name,
        &req.bytes().map_err(crate::error::ServiceError::from)?,
        req.cas,
        state.now(),
    )
    .await?;
    tracing::info!(secret = %meta.name, version = meta.version, client_id = %claims.client_id, "wrote a secret");
    let note = AuditNote::object(format!("secret {} v{}", meta.name, meta.version));
    Ok((axum::Extension(note), Json(meta)).into_response())
}

async fn secrets_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let claims = authorize_secret(&state, &headers, Access::Write, &name).await?;
    secrets::delete(state.store(), &name).await?;
    tracing::info!(secret = %name, client_id = %claims.client_id, "deleted a secret");
    Ok(StatusCode::NO_CONTENT.into_response())
}
