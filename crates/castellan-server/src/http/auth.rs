//! The `/v1` bearer check: Castellan's own access tokens, and the scopes they carry.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use castellan_core::secret;
use castellan_core::secret_store::{self, Access};
use castellan_core::token::AccessClaims;

use super::error::ApiError;
use crate::own_tokens;
use crate::state::{AppState, VERIFIED_TOKENS};

/// Clock skew allowed when checking `exp` and `nbf` of tokens presented to /v1.
const LEEWAY_SECS: i64 = 60;

/// Verifies a Bearer access token issued by this Castellan for its own API and checks a scope.
/// `admin` grants every scope; `None` accepts any valid token.
///
/// The token's client must still exist, and the token's scopes count only as far as the client still
/// holds them: deleting a client (or taking a scope away) ends what its tokens may do at once, not when
/// they expire.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    scope: Option<&str>,
) -> Result<Arc<AccessClaims>, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| unauthorized("a Bearer access token is required"))?;
    if token.len() > 8192 {
        return Err(unauthorized("the token is too large"));
    }
    let ring = state.ring();
    // A client sends the same token until it expires: its signature and claims are checked once per
    // key ring, and its SHA-256 remembered (compared as a digest, so lookups say nothing about other
    // tokens). Time, client and scope are checked on every request.
    let digest = secret::hash_secret(token);
    let remembered = ring
        .verified
        .lock()
        .ok()
        .and_then(|m| m.get(&digest).cloned());
    let fresh = remembered.is_none();
    let claims = match remembered {
        Some(claims) => claims,
        None => Arc::new(
            own_tokens::verify(
                state,
                &ring,
                token,
                Some(&state.settings().issuer),
                own_tokens::Kind::Access,
            )
            .map_err(unauthorized)?,
        ),
    };
    let now = state.now();
    if claims.exp + LEEWAY_SECS <= now || claims.nbf - LEEWAY_SECS > now {
        return Err(unauthorized("the token is expired or not yet valid"));
    }
    if fresh && let Ok(mut m) = ring.verified.lock() {
        if m.len() >= VERIFIED_TOKENS {
            m.clear();
        }
        m.insert(digest, claims.clone());
    }
    // A client a `[[trusted_issuer]]` maps to is not in the store (its ids never start with `cl_`):
    // it holds what the configuration in force gives it.
    let client_scopes = match state.mapped_client_scopes(&claims.client_id) {
        Some(scopes) => scopes,
        None => state
            .client(&claims.client_id)
            .await?
            .ok_or_else(|| unauthorized("the token's client no longer exists"))?
            .scopes
            .clone(),
    };
    let claims = held_scopes(claims, &client_scopes);
    super::audit_layer::note_caller(&claims);
    if let Some(need) = scope {
        let has = claims.scope.split(' ').any(|s| s == need || s == "admin");
        if !has {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token lacks the `{need}` scope"),
            ));
        }
    }
    Ok(claims)
}

/// The claims with only the scopes the client still holds (the same claims when it holds them all).
fn held_scopes(claims: Arc<AccessClaims>, client_scopes: &str) -> Arc<AccessClaims> {
    let held = |s: &&str| client_scopes.split(' ').any(|c| c == *s);
    if claims.scope.split(' ').all(|s| held(&s)) {
        return claims;
    }
    let scope = claims
        .scope
        .split(' ')
        .filter(held)
        .collect::<Vec<_>>()
        .join(" ");
    Arc::new(AccessClaims {
        scope,
        ..AccessClaims::clone(&claims)
    })
}

/// A valid token whose scopes allow `access` to `name` (see [`secret_store::scopes_allow`]).
pub(crate) async fn authorize_secret(
    state: &AppState,
    headers: &HeaderMap,
    access: Access,
    name: &str,
) -> Result<Arc<AccessClaims>, ApiError> {
    let claims = authorize(state, headers, None).await?;
    if secret_store::scopes_allow(&claims.scope, access, name) {
        return Ok(claims);
    }
    let verb = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "the token lacks the `secrets:{verb}` scope (or `secrets:{verb}:PREFIX` covering this name)"
        ),
    ))
}
