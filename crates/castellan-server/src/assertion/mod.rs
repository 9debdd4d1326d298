//! Workload sign-in with another issuer's tokens (RFC 7523 client assertions): a Kubernetes pod sends
//! its projected service-account token as `client_assertion` and gets Castellan's access token for the
//! client and scopes a `[[trusted_issuer]]` entry maps it to.
//!
//! The token is checked with jsonwebtoken: its header's `alg` against the issuer's allowlist (never
//! `none` or HMAC), its signature against the issuer's JWKS (by `kid`), `iss`, `aud`, `exp` and `nbf`
//! (on the server's clock, [`LEEWAY_SECS`] of leeway), and, for a Kubernetes token, that `sub` agrees
//! with its `kubernetes.io` claims. Every refusal is the same `invalid_client` to the caller; the log
//! says which check failed.

use castellan_store::ClientRow;

use crate::state::AppState;
use crate::tokens::{IssuedToken, TokenError, TokenRequest};

pub(crate) mod keys;

pub(crate) mod issuers;
pub use issuers::*;
pub use keys::{KEYS_MAX_AGE, MAX_JWKS_BYTES, MAX_KEYS, REFETCH_COOLDOWN};

/// The token endpoint's use case for a client that authenticates with an assertion: the
/// `client_credentials` grant, for the client the assertion maps to.
pub async fn issue(
    state: &AppState,
    assertion: &ClientAssertion,
    req: &TokenRequest,
) -> Result<IssuedToken, TokenError> {
    if req.grant_type != "client_credentials" {
        return Err(TokenError::UnsupportedGrantType);
    }
    let Some(trusted) = state.trusted_issuers() else {
        tracing::info!("a client assertion was sent, but no trusted_issuer is configured");
        return Err(TokenError::InvalidClient);
    };
    let client = match trusted.verify(&assertion.assertion, state.now()).await {
        Ok(c) => c,
        Err(AssertionError::KeysUnavailable) => return Err(TokenError::Unavailable),
        Err(e) => {
            tracing::info!(reason = %e, "client assertion refused");
            return Err(TokenError::InvalidClient);
        }
    };
    if assertion
        .client_id
        .as_ref()
        .is_some_and(|id| *id != client.client_id)
    {
        tracing::info!(reason = %AssertionError::ClientIdMismatch, "client assertion refused");
        return Err(TokenError::InvalidClient);
    }
    let row = ClientRow {
        client_id: client.client_id.clone(),
        name: client.client_id,
        secret_hash: Vec::new(),
        scopes: client.scopes,
        audience: client.audience,
        token_ttl_secs: client.token_ttl_secs,
        created_at: 0,
        app: castellan_store::ClientApp::default(),
        cert_names: None,
        policy: None,
    };
    crate::tokens::sign_for(state, &row, req.scope.as_deref(), req.audience.as_deref())
}

/// Shared with the tests of this module.
#[cfg(test)]
mod tests;
