//! Client tokens of the Vault-shaped API (issue 20): what a Vault login returns and `X-Vault-Token`
//! carries.
//!
//! A token is an opaque random string (`cvt.` and 32 random bytes, base64url); the store keeps only its
//! SHA-256 with the client it acts for and the scopes that client held at login, so a token made at
//! one replica is looked up, renewed and revoked at every replica. On each use the scopes count only as
//! far as the client still holds them (exactly as for Castellan's own access tokens).
//!
//! A replica remembers a token it looked up for [`RECHECK`], so a hot path (an External Secrets
//! refresh, a benchmark) does not read the store on every request: a token revoked at another replica
//! stops working there within that time; at the replica that revoked it, at once.

use std::sync::Arc;

use castellan_core::secret;
use castellan_core::token::AccessClaims;
use castellan_store::VaultTokenRow;
use zeroize::Zeroizing;

use crate::error::ServiceError;
use crate::state::AppState;

/// The longest accepted `X-Vault-Token`.
pub const MAX_TOKEN_LEN: usize = 256;

pub use crate::config::vault::VaultSettings;
pub use crate::vault_layer::{RECHECK, VaultLayer};

/// A token just made: the token itself (shown once, to the caller who logged in) and its record.
pub struct NewToken {
    /// The token.
    pub token: Zeroizing<String>,
    /// What the store keeps.
    pub row: VaultTokenRow,
}

/// Makes a token for `client_id` holding `scope` (already bounded to what the client holds), living
/// `ttl_secs` (the configured lifetime when 0), never beyond `tokens.max_ttl` from now.
pub async fn login(
    state: &AppState,
    client_id: &str,
    scope: &str,
    ttl_secs: i64,
    auth_path: &str,
) -> Result<NewToken, ServiceError> {
    let now = state.now();
    let max = state.settings().max_ttl_secs;
    let ttl = if ttl_secs > 0 {
        ttl_secs
    } else {
        state.vault().settings().token_ttl_secs
    }
    .min(max)
    .max(1);
    let token = Zeroizing::new(format!("cvt.{}", secret::generate_secret()?.as_str()));
    let row = VaultTokenRow {
        token_hash: secret::hash_secret(&token),
        accessor: secret::random_id("", 12)?,
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        auth_path: auth_path.to_owned(),
        created_at: now,
        ttl_secs: ttl,
        expires_at: now + ttl,
        max_expires_at: now + max,
    };
    // Expired tokens go now (indexed by expiry), so the table holds only live ones.
    state
        .store()
        .prune_vault_tokens(now)
        .await
        .map_err(ServiceError::Store)?;
    state
        .store()
        .add_vault_token(&row)
        .await
        .map_err(ServiceError::Store)?;
    state.vault().remember(Arc::new(row.clone()));
    Ok(NewToken { token, row })
}

/// The live record of `token`, or `None` when it is unknown, revoked or expired.
pub async fn lookup(
    state: &AppState,
    token: &str,
) -> Result<Option<Arc<VaultTokenRow>>, ServiceError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let hash = secret::hash_secret(token);
    let layer = state.vault();
    let row = match layer.recalled(&hash) {
        Some(r) => r,
        None => match state
            .store()
            .vault_token(&hash)
            .await
            .map_err(ServiceError::Store)?
        {
            Some(r) => {
                let r = Arc::new(r);
                layer.remember(r.clone());
                r
            }
            None => {
                layer.forget(&hash);
                return Ok(None);
            }
        },
    };
    Ok((row.expires_at > state.now()).then_some(row))
}

/// The claims a token acts with: its client, and its scopes as far as the client still holds them
/// (`None` when the client no longer exists).
pub async fn claims(
    state: &AppState,
    row: &VaultTokenRow,
) -> Result<Option<Arc<AccessClaims>>, ServiceError> {
    let held = match state.mapped_client_scopes(&row.client_id) {
        Some(s) => s,
        None => match state.client(&row.client_id).await? {
            Some(c) => c.scopes.clone(),
            None => return Ok(None),
        },
    };
    let scope = row
        .scope
        .split(' ')
        .filter(|s| !s.is_empty() && held.split(' ').any(|h| h == *s))
        .collect::<Vec<_>>()
        .join(" ");
    let issuer = state.settings().issuer.clone();
    Ok(Some(Arc::new(AccessClaims {
        iss: issuer.clone(),
        sub: row.client_id.clone(),
        aud: issuer,
        exp: row.expires_at,
        iat: row.created_at,
        nbf: row.created_at,
        jti: row.accessor.clone(),
        client_id: row.client_id.clone(),
        scope,
    })))
}

/// Extends a token by its lifetime (never beyond its maximum); returns the new record.
pub async fn renew(state: &AppState, row: &VaultTokenRow) -> Result<VaultTokenRow, ServiceError> {
    let expires_at = (state.now() + row.ttl_secs).min(row.max_expires_at);
    let found = state
        .store()
        .renew_vault_token(&row.token_hash, expires_at)
        .await
        .map_err(ServiceError::Store)?;
    if !found {
        return Err(ServiceError::NotFound("the token".into()));
    }
    let renewed = VaultTokenRow {
        expires_at,
        ..row.clone()
    };
    state.vault().remember(Arc::new(renewed.clone()));
    Ok(renewed)
}

/// Revokes a token at once (here, and at every replica within [`RECHECK`]).
pub async fn revoke(state: &AppState, row: &VaultTokenRow) -> Result<(), ServiceError> {
    state.vault().forget(&row.token_hash);
    state
        .store()
        .revoke_vault_token(&row.token_hash)
        .await
        .map_err(ServiceError::Store)?;
    state.vault().forget(&row.token_hash);
    Ok(())
}
