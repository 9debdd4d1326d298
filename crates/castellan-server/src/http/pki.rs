//! `/v1/pki`: issuing, signing, revoking and listing certificates, the CA and the CRL.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use castellan_core::pki::{IssueRequest, RevocationReason};
use castellan_wire::pki::{CaJson, CertList, SignBody};
use serde_json::json;

use super::ApiPath;
use super::auth::authorize;
use super::error::{ApiError, json_rejection};
use crate::error::ServiceError;
use crate::pki::{self, SetJson};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/pki/issue/{profile}", post(pki_issue))
        .route("/v1/pki/sign/{profile}", post(pki_sign))
        .route("/v1/pki/ca", get(pki_ca))
        .route("/v1/pki/revoke", post(pki_revoke))
        .route("/v1/pki/certs", get(pki_list))
        .route("/v1/pki/crl", get(pki_crl_der))
        .route("/v1/pki/crl.pem", get(pki_crl_pem))
}

fn set_response(set: &castellan_core::pki::IssuedSet, req: &IssueRequest) -> Response {
    let mut names: Vec<String> = req.common_name.iter().cloned().collect();
    names.extend(req.dns_names.iter().cloned());
    names.extend(req.ip_addresses.iter().map(|ip| ip.to_string()));
    names.extend(req.uris.iter().cloned());
    let note = super::audit_layer::AuditNote::object(format!(
        "certificate {} {}",
        set.serial_hex,
        names.join(",")
    ));
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Extension(note),
        Json(SetJson::from(set)),
    )
        .into_response()
}

async fn pki_issue(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(profile): ApiPath<String>,
    body: Result<Json<IssueRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, None).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let set = crate::cert_names::issue_as(&state, &caller, &profile, None, &req).await?;
    tracing::info!(serial = %set.serial_hex, profile, "issued a certificate");
    Ok(set_response(&set, &req))
}

async fn pki_sign(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(profile): ApiPath<String>,
    body: Result<Json<SignBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, None).await?;
    let Json(b) = body.map_err(json_rejection)?;
    let (csr, req) = b.into_parts();
    let set = crate::cert_names::issue_as(&state, &caller, &profile, Some(&csr), &req).await?;
    tracing::info!(serial = %set.serial_hex, profile, "signed a CSR");
    Ok(set_response(&set, &req))
}

/// Public: the trust anchors are not secret.
async fn pki_ca(State(state): State<AppState>) -> Response {
    let ca = state.ca();
    Json(CaJson {
        ca_bundle_pem: Some(ca.issuer.ca_bundle_pem().to_owned()),
        issuing_ca_not_after: Some(ca.issuer.ca_not_after()),
        issuing_ca_pem: Some(ca.issuer.ca_cert_pem().to_owned()),
        issuing_ca_subject: Some(ca.issuer.ca_subject().to_owned()),
        root_pem: Some(ca.issuer.root_pem().to_owned()),
    })
    .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    serial: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn pki_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RevokeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("pki:revoke")).await?;
    let Json(b) = body.map_err(json_rejection)?;
    let reason = b
        .reason
        .as_deref()
        .map(str::parse::<RevocationReason>)
        .transpose()
        .map_err(ServiceError::from)?;
    let (outcome, crl) = pki::revoke(
        state.store(),
        &state.ca(),
        &b.serial,
        reason,
        state.now(),
        state.settings().crl_validity_secs,
    )
    .await?;
    let status = if outcome == castellan_store::Revocation::Revoked {
        "revoked"
    } else {
        "already_revoked"
    };
    tracing::info!(serial = %b.serial, status, "revocation");
    Ok(Json(json!({"serial": pki::normalize_serial(&b.serial)?, "status": status, "crl_number": crl.crl_number})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    expiring_within: Option<i64>,
}

async fn pki_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("pki:read")).await?;
    let q = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let certs = pki::list(state.store(), q.expiring_within, state.now()).await?;
    Ok(Json(CertList {
        certificates: certs,
    })
    .into_response())
}

async fn crl(state: &AppState) -> Result<castellan_store::CrlRow, ApiError> {
    Ok(pki::current_crl(
        state.store(),
        &state.ca(),
        state.now(),
        state.settings().crl_validity_secs,
        0,
    )
    .await?)
}

/// Public, as a CRL distribution point must be.
async fn pki_crl_der(State(state): State<AppState>) -> Result<Response, ApiError> {
    let c = crl(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], c.der).into_response())
}

async fn pki_crl_pem(State(state): State<AppState>) -> Result<Response, ApiError> {
    let c = crl(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], c.pem).into_response())
}
