//! `POST /v1/tokens/sign` (scope `tokens:sign`) and `GET`/`PUT`/`DELETE /v1/clients/{id}/policy`
//! (scope `clients:admin`): the signing API and the per-client policy that bounds it (issue 18).
//! The use cases are [`crate::tokens::sign`] and [`crate::client_policies`].

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use castellan_wire::sign::{ClientPolicySpec, SignRequest};
use serde_json::json;

use super::ApiPath;
use super::audit_layer::AuditNote;
use super::auth::authorize;
use super::error::{ApiError, json_rejection};
use crate::client_policies;
use crate::state::AppState;
use crate::tokens::sign::{SignContext, SignError, sign};

/// The scope the signing API needs.
pub const SIGN_SCOPE: &str = "tokens:sign";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tokens/sign", post(sign_token))
        .route(
            "/v1/clients/{id}/policy",
            get(policy_get).put(policy_put).delete(policy_delete),
        )
}

async fn sign_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SignRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, Some(SIGN_SCOPE)).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let client = state.client(&caller.client_id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "rule `policy`: the token's client has no token policy",
        )
    })?;
    let now = state.now();
    let ring = state.ring();
    let key = ring.ring.signing_key(now).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no signing key is active",
        )
    })?;
    let settings = state.settings();
    let ctx = SignContext {
        issuer: &settings.issuer,
        default_ttl_secs: settings.default_ttl_secs,
        max_ttl_secs: settings.max_ttl_secs,
        now,
    };
    // The audit event names the token by its jti, with who it is for: the way back from a token
    // found elsewhere to the caller, the replica and the time that had it signed.
    let (sub, aud) = (req.sub.clone(), req.aud.clone());
    match sign(&key.key, &ctx, &client, req) {
        Ok(signed) => {
            state.metrics().token_issued(key.key.alg());
            let note = AuditNote {
                object: Some(format!("token {}", signed.jti)),
                detail: Some(json!({
                    "kid": signed.kid,
                    "sub": sub,
                    "aud": aud,
                    "typ": signed.typ,
                    "exp": signed.expires_at,
                })),
            };
            Ok((
                [(header::CACHE_CONTROL, "no-store")],
                axum::Extension(note),
                Json(signed),
            )
                .into_response())
        }
        Err(SignError::Refused(rule, message)) => {
            tracing::info!(client_id = %client.client_id, rule = rule.as_str(), "signing refused by policy");
            Ok((
                StatusCode::FORBIDDEN,
                Json(json!({"error": {
                    "code": "policy_violation",
                    "rule": rule.as_str(),
                    "message": format!("rule `{}`: {message}", rule.as_str()),
                }})),
            )
                .into_response())
        }
        Err(SignError::Invalid(m)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m))
        }
        Err(e @ SignError::NoSigningKey) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}

async fn policy_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("clients:admin")).await?;
    let row = state
        .store()
        .client_by_id_or_name(&id)
        .await
        .map_err(crate::error::ServiceError::from)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("client `{id}` not found"),
            )
        })?;
    Ok(Json(json!({
        "client_id": row.client_id,
        "audience": crate::tokens::audience::default_audience(&state, &row),
        "policy": row.policy.as_ref().map(client_policies::spec_of),
    }))
    .into_response())
}

async fn policy_put(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Result<Json<ClientPolicySpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("clients:admin")).await?;
    let Json(spec) = body.map_err(json_rejection)?;
    let policy = client_policies::set_policy(
        state.store(),
        &id,
        Some(&spec),
        state.settings().max_ttl_secs,
    )
    .await?;
    let _ = state.refresh().await;
    Ok(Json(policy).into_response())
}

async fn policy_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("clients:admin")).await?;
    client_policies::set_policy(state.store(), &id, None, state.settings().max_ttl_secs).await?;
    let _ = state.refresh().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
