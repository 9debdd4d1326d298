//! Issuing access tokens: the token endpoint's use case below HTTP. A client's credentials and its
//! request come in; a signed RFC 9068 access token or a typed refusal goes out. It reads only memory
//! (the cached key ring and clients, see [`AppState`]).

use castellan_core::secret;
use castellan_core::token::{AccessClaims, sign_access_token};
use zeroize::Zeroizing;

use crate::clients::valid_scope_token;
use crate::state::AppState;

/// A client's credentials, however they were sent. `Debug` hides the secret.
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Zeroizing<String>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the client asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: String,
    /// `scope`, space-separated; every scope of the client when absent.
    pub scope: Option<String>,
}

/// An issued access token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The JWT.
    pub access_token: String,
    /// Its lifetime, seconds.
    pub expires_in: i64,
    /// The scopes it carries.
    pub scope: String,
}

/// Why no token was issued (RFC 6749 §5.2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The grant type is not one Castellan issues for.
    #[error("only the client_credentials grant is supported")]
    UnsupportedGrantType,
    /// Unknown client or wrong secret (which of the two is not said).
    #[error("client authentication failed")]
    InvalidClient,
    /// The scope parameter is not a list of scope-tokens.
    #[error("the scope parameter is malformed")]
    MalformedScope,
    /// The client may not ask for this scope.
    #[error("the client may not ask for `{0}`")]
    ScopeNotAllowed(String),
    /// The client is not in this replica's memory and the store cannot be asked (an outage).
    #[error("the service cannot check this client now; try again shortly")]
    Unavailable,
    /// No key of the ring signs now.
    #[error("no signing key is active")]
    NoSigningKey,
    /// Signing or randomness failed.
    #[error("the token could not be issued")]
    Internal,
}

/// Issues a `client_credentials` access token.
pub async fn issue(
    state: &AppState,
    credentials: &ClientCredentials,
    req: &TokenRequest,
) -> Result<IssuedToken, TokenError> {
    if req.grant_type != "client_credentials" {
        return Err(TokenError::UnsupportedGrantType);
    }
    let client = state
        .client(&credentials.client_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "a client unknown to this replica could not be looked up");
            TokenError::Unavailable
        })?
        .filter(|c| secret::verify_secret(&credentials.client_secret, &c.secret_hash))
        .ok_or_else(|| {
            // Debug-formatted: a client id is the sender's text, and a newline in it must not start
            // a line of its own in the log.
            tracing::info!(client_id = ?credentials.client_id.chars().take(64).collect::<String>(), "client authentication failed");
            TokenError::InvalidClient
        })?;
    sign_for(state, &client, req.scope.as_deref())
}

/// Signs an access token for an authenticated `client` (from the store, or mapped from a client
/// assertion, see [`crate::assertion`]) with the scopes it asks for among those it holds.
pub(crate) fn sign_for(
    state: &AppState,
    client: &castellan_store::ClientRow,
    requested_scope: Option<&str>,
) -> Result<IssuedToken, TokenError> {
    let scope = granted_scope(&client.scopes, requested_scope)?;

    let now = state.now();
    let ring = state.ring();
    let key = ring
        .ring
        .signing_key(now)
        .map_err(|_| TokenError::NoSigningKey)?;
    let settings = state.settings();
    // A client keeps the lifetime it was created with, but never beyond the `tokens.max_ttl` in force
    // now: the key ring's retirement window is checked against that maximum.
    let ttl = if client.token_ttl_secs > 0 {
        client.token_ttl_secs
    } else {
        settings.default_ttl_secs
    }
    .min(settings.max_ttl_secs);
    let claims = AccessClaims {
        iss: settings.issuer.clone(),
        sub: client.client_id.clone(),
        aud: client
            .audience
            .clone()
            .unwrap_or_else(|| settings.issuer.clone()),
        exp: now + ttl,
        iat: now,
        nbf: now,
        jti: secret::random_id("", 16).map_err(|_| TokenError::Internal)?,
        client_id: client.client_id.clone(),
        scope: scope.clone(),
    };
    let access_token = sign_access_token(&key.key, &claims).map_err(|_| TokenError::Internal)?;
    state.metrics().token_issued(key.key.alg());
    Ok(IssuedToken {
        access_token,
        expires_in: ttl,
        scope,
    })
}

/// The scopes a token gets: those asked for when the client holds each, every scope it holds when
/// none are asked for.
fn granted_scope(client_scopes: &str, requested: Option<&str>) -> Result<String, TokenError> {
    let allowed: Vec<&str> = client_scopes.split_whitespace().collect();
    let Some(requested) = requested else {
        return Ok(allowed.join(" "));
    };
    let asked: Vec<&str> = requested.split(' ').collect();
    if asked.iter().any(|s| !valid_scope_token(s)) {
        return Err(TokenError::MalformedScope);
    }
    if let Some(bad) = asked.iter().find(|s| !allowed.contains(s)) {
        return Err(TokenError::ScopeNotAllowed((*bad).to_owned()));
    }
    Ok(asked.join(" "))
}
