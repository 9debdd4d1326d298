//! `/v1/clients`.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use castellan_wire::clients::ClientList;

use super::ApiPath;
use super::auth::authorize;
use super::error::{ApiError, json_rejection};
use crate::clients::NewClient;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/clients", get(clients_list).post(clients_create))
        .route("/v1/clients/{id}", delete(clients_delete))
}

async fn clients_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("clients:admin")).await?;
    Ok(Json(ClientList {
        clients: crate::clients::list_clients(state.store()).await?,
    })
    .into_response())
}

async fn clients_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewClient>, JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, Some("clients:admin")).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let me = state.caller(&caller).await?;
    let created = crate::clients::create_client_as(
        state.store(),
        &me,
        &caller.scope,
        req,
        state.settings().max_ttl_secs,
        state.now(),
    )
    .await?;
    // Make the new client usable on this replica at once.
    let _ = state.refresh().await;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    )
        .into_response())
}

async fn clients_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, Some("clients:admin")).await?;
    crate::clients::delete_client_as(state.store(), &caller.scope, &id).await?;
    let _ = state.refresh().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
