//! The `/v1` bearer check: Castellan's own access tokens, and the scopes they carry.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use castellan_core::secret;
use castellan_core::secret_store::{self, Access};
use castellan_core::token::AccessClaims;
use jsonwebtoken::Validation;

use super::error::ApiError;
use crate::state::{AppState, LoadedRing, VERIFIED_TOKENS};

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
        None => Arc::new(verify_access_token(state, &ring, token).map_err(unauthorized)?),
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

/// The signature, type, issuer and audience of an access token (not its times: see [`authorize`]).
fn verify_access_token(
    state: &AppState,
    ring: &LoadedRing,
    token: &str,
) -> Result<AccessClaims, &'static str> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is malformed")?;
    if !header.typ.as_deref().is_some_and(is_access_token_type) {
        return Err("not an access token");
    }
    if header.crit.is_some() || raw_header_has_crit(token) {
        return Err("the token names critical header extensions, which Castellan does not support");
    }
    let (dk, alg) = header
        .kid
        .as_deref()
        .and_then(|kid| ring.verifiers.get(kid))
        .ok_or("the token was signed by an unknown key")?;
    let mut v = Validation::new(*alg);
    v.set_issuer(&[&state.settings().issuer]);
    v.set_audience(&[&state.settings().issuer]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "nbf"]);
    // Expiry is judged against the state's clock (a parameter), by the caller.
    v.validate_exp = false;
    v.validate_nbf = false;
    jsonwebtoken::decode::<AccessClaims>(token, dk, &v)
        .map(|data| data.claims)
        .map_err(|_| "the token is not valid")
}

/// `typ` is a media type: `at+jwt` or `application/at+jwt`, compared case-insensitively (RFC 9068
/// §2.1, RFC 7515 §4.1.9).
fn is_access_token_type(typ: &str) -> bool {
    let short = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    short.eq_ignore_ascii_case("at+jwt")
}

/// Whether the header's own JSON has a `crit` member. jsonwebtoken's `Header` reads `"crit": null` as
/// absent, and a member name written with escapes (`cr\u0069t`) is still `crit`; RFC 7515 §4.1.11
/// says a recipient that does not understand the extensions it lists must refuse the token. A header
/// that cannot be read again counts as having one.
fn raw_header_has_crit(token: &str) -> bool {
    use base64::Engine as _;
    let segment = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).ok()
        })
        .is_none_or(|header| header.contains_key("crit"))
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
