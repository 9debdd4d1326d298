//! `/v1/keys`: the key ring's keys, its plan, rotation, revocation and import.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::ApiPath;
use super::auth::authorize;
use super::error::{ApiError, json_rejection};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(keys_list))
        .route("/v1/keys/plan", get(keys_plan))
        .route("/v1/keys/rotate", post(keys_rotate))
        .route("/v1/keys/import", post(keys_import))
        .route("/v1/keys/{kid}/revoke", post(keys_revoke))
}

async fn keys_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    Ok(Json(json!({"keys": crate::keys::list(state.store(), state.now()).await?})).into_response())
}

async fn keys_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    let events = crate::keys::plan(state.store(), &state.settings().rotation, state.now()).await?;
    Ok(Json(json!({"events": events})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    now: bool,
    /// With `now`: sign with the new key after the wait even if a replica does not publish it yet.
    #[serde(default)]
    force: bool,
    /// With `now`: how long to wait for every live replica to publish the new key (default 10).
    #[serde(default)]
    wait_secs: Option<u64>,
}

/// The longest wait a request may ask for (it holds the request open; `http.request_timeout` is 60 s).
const MAX_WAIT_SECS: u64 = 50;

async fn keys_rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RotateBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    let Json(b) = body.map_err(json_rejection)?;
    if !b.now && (b.force || b.wait_secs.is_some()) {
        return Err(bad_request("`force` and `wait_secs` go with `now: true`"));
    }
    let wait = wait_of(b.wait_secs)?;
    let (store, master, policy) = (state.store(), state.master(), &state.settings().rotation);
    let key = if b.now {
        let opts = crate::keys::EmergencyOptions {
            wait,
            force: b.force,
        };
        crate::keys::rotate_now(store, master, policy, state.clock(), opts).await?
    } else {
        crate::keys::schedule_rotation(store, master, policy, state.now()).await?
    };
    let _ = state.refresh().await;
    Ok(Json(key).into_response())
}

/// `wait_secs` of an emergency switch: the default, or at most [`MAX_WAIT_SECS`].
fn wait_of(wait_secs: Option<u64>) -> Result<std::time::Duration, ApiError> {
    match wait_secs {
        Some(w) if w > MAX_WAIT_SECS => Err(bad_request(&format!(
            "wait_secs {w} is above the maximum of {MAX_WAIT_SECS}"
        ))),
        Some(w) => Ok(std::time::Duration::from_secs(w)),
        None => Ok(crate::emergency::DEFAULT_WAIT),
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        message.to_owned(),
    )
}

async fn keys_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(kid): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    crate::keys::revoke(state.store(), &kid, state.now()).await?;
    let _ = state.refresh().await;
    Ok(Json(json!({"kid": kid, "status": "revoked"})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    pem: String,
    #[serde(default)]
    state: Option<String>,
    /// The kid the old service put in its tokens (default: the RFC 7638 thumbprint).
    #[serde(default)]
    kid: Option<String>,
    /// With `state: "current"`: as `POST /v1/keys/rotate` with `now`.
    #[serde(default)]
    wait_secs: Option<u64>,
    #[serde(default)]
    force: bool,
}

async fn keys_import(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ImportBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    // An imported key is one its owner knows: whoever imports one can sign tokens this server and
    // every verifier accept, for any scope. Only `admin`, which already has every scope, may.
    authorize(&state, &headers, Some("admin")).await?;
    let Json(b) = body.map_err(json_rejection)?;
    let as_ = match b.state.as_deref() {
        None | Some("retired") => {
            if b.force || b.wait_secs.is_some() {
                return Err(bad_request(
                    "`force` and `wait_secs` go with `state: \"current\"`",
                ));
            }
            crate::keys::ImportAs::Retired
        }
        Some("current") => crate::keys::ImportAs::Current(crate::keys::EmergencyOptions {
            wait: wait_of(b.wait_secs)?,
            force: b.force,
        }),
        Some(other) => {
            return Err(bad_request(&format!(
                "state `{other}`: expected current or retired"
            )));
        }
    };
    let key = crate::keys::import(
        state.store(),
        state.master(),
        &b.pem,
        b.kid.as_deref(),
        as_,
        &state.settings().rotation,
        state.clock(),
    )
    .await?;
    let _ = state.refresh().await;
    Ok(Json(key).into_response())
}
