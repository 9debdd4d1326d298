//! `/v1/users` (scope `users:admin`).

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use castellan_wire::users::{NewPassword, NewUser, UserList};

use super::ApiPath;
use super::auth::authorize;
use super::error::{ApiError, json_rejection};
use crate::state::AppState;
use crate::users;

const SCOPE: &str = "users:admin";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/users", get(list).post(create))
        .route("/v1/users/{name}", get(show).delete(remove))
        .route("/v1/users/{name}/password", put(password))
        .route("/v1/users/{name}/disable", post(disable))
        .route("/v1/users/{name}/enable", post(enable))
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some(SCOPE)).await?;
    Ok(Json(UserList {
        users: users::list_users(state.store()).await?,
    })
    .into_response())
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some(SCOPE)).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let created = users::create_user(state.store(), req, state.hashing(), state.now()).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some(SCOPE)).await?;
    let u = users::find_user(state.store(), &name).await?;
    Ok(Json(users::user_info(&u)).into_response())
}

async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some(SCOPE)).await?;
    users::delete_user(state.store(), &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn password(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some(SCOPE)).await?;
    let Json(req) = body.map_err(json_rejection)?;
    users::set_password(
        state.store(),
        &name,
        req.password,
        state.hashing(),
        state.now(),
    )
    .await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "no-store")],
    )
        .into_response())
}

async fn disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some(SCOPE)).await?;
    Ok(Json(users::set_disabled(state.store(), &name, true, state.now()).await?).into_response())
}

async fn enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some(SCOPE)).await?;
    Ok(Json(users::set_disabled(state.store(), &name, false, state.now()).await?).into_response())
}
