//! The HTTP API, one module per area, each giving its routes; [`router`] merges them. Handlers
//! extract, authorize, make one service call and map the error ([`error`]); they hold no policy.

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub mod audit;
pub(crate) mod audit_layer;
pub mod auth;
mod clients;
pub mod error;
mod keys;
mod oauth;
mod pki;
mod secrets;
mod sign;
mod signin;
mod sys;
mod users;
mod vault;

pub use auth::authorize;
pub use error::ApiError;
pub use vault::NATIVE_AREAS as VAULT_NATIVE_AREAS;

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 64 * 1024;

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(sys::routes())
        .merge(oauth::routes())
        .merge(clients::routes())
        .merge(keys::routes())
        .merge(pki::routes())
        .merge(secrets::routes())
        .merge(signin::routes())
        .merge(users::routes())
        .merge(sign::routes())
        .merge(audit::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            audit_layer::record_v1,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .fallback(not_found)
        // The Vault-shaped API answers its requests before the native routes see them.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            vault::dispatch,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn count_requests(
    State(state): State<AppState>,
    path: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    state
        .metrics()
        .request(path.as_str(), resp.status().as_u16());
    resp
}

/// A path parameter whose refusal (for example bytes that are not UTF-8) is the API's JSON error.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for ApiPath<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
    }
}

/// A known path with a method it does not take: 405 in the API's JSON error form (axum adds `Allow`).
async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method (see the Allow header)",
    )
    .into_response()
}

async fn not_found(State(state): State<AppState>) -> Response {
    state.metrics().request("unmatched", 404);
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}
