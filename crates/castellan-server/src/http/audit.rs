//! `GET /v1/audit` (scope `audit:read`): events by time, actor, action and replica, oldest first.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use castellan_store::AuditFilter;
use serde_json::json;

use super::{ApiError, authorize};
use crate::state::AppState;

/// The routes (merged by [`crate::http::router`]).
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list))
}

/// The query of `GET /v1/audit`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// A duration back from now (`1h`, `30m`).
    since: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    replica: Option<String>,
    limit: Option<i64>,
}

/// Events newer than `since` (`1h`, `7d`: back from now), at most `limit` (default 1000).
pub fn filter(
    since: Option<&str>,
    actor: Option<String>,
    action: Option<String>,
    replica: Option<String>,
    limit: Option<i64>,
) -> Result<AuditFilter, String> {
    let since_ms = match since {
        Some(s) => {
            let d =
                castellan_core::duration::parse_duration(s).map_err(|e| format!("since: {e}"))?;
            Some(crate::audit::wall_ms() - d.as_millis().min(i64::MAX as u128 / 2) as i64)
        }
        None => None,
    };
    Ok(AuditFilter {
        since_ms,
        actor,
        action,
        replica,
        limit: limit.unwrap_or(1000).clamp(1, 100_000),
    })
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("audit:read")).await?;
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let f = filter(q.since.as_deref(), q.actor, q.action, q.replica, q.limit)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m))?;
    let events = state
        .store()
        .audit_events(&f)
        .await
        .map_err(crate::error::ServiceError::from)?;
    Ok(Json(json!({ "events": events })).into_response())
}
