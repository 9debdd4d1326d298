//! Issuing access tokens: the token endpoint's use case below HTTP. A client's credentials and its
//! request come in; a signed RFC 9068 access token or a typed refusal goes out. It reads only memory
//! (the cached key ring and clients, see [`AppState`]).

use castellan_core::secret;
use castellan_core::token::{AccessClaims, sign_access_token};
use zeroize::Zeroizing;

use crate::state::AppState;
use castellan_core::token::valid_scope_token;

/// A client's credentials, however they were sent. `Debug` hides the secret.
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret; `None` for a public client (`token_endpoint_auth_method=none`).
    pub client_secret: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the client asks for.
#[derive(Clone)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: String,
    /// `scope`, space-separated; every scope of the client when absent.
    pub scope: Option<String>,
    /// `code` (authorization_code).
    pub code: Option<String>,
    /// `redirect_uri` (authorization_code).
    pub redirect_uri: Option<String>,
    /// `code_verifier` (authorization_code, PKCE).
    pub code_verifier: Option<String>,
    /// `refresh_token` (refresh_token).
    pub refresh_token: Option<Zeroizing<String>>,
    /// The audience asked for: `audience` (RFC 8693) or `resource` (RFC 8707).
    pub audience: Option<String>,
    /// `subject_token` (token exchange, RFC 8693).
    pub subject_token: Option<Zeroizing<String>>,
    /// `subject_token_type` (token exchange).
    pub subject_token_type: Option<String>,
}

impl TokenRequest {
    /// A request of `grant_type` with no other parameter.
    pub fn grant(grant_type: &str, scope: Option<String>) -> Self {
        Self {
            grant_type: grant_type.to_owned(),
            scope,
            code: None,
            redirect_uri: None,
            code_verifier: None,
            refresh_token: None,
            audience: None,
            subject_token: None,
            subject_token_type: None,
        }
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

pub(crate) mod audience;
pub mod exchange;
pub mod issued;
pub mod sign;
pub use issued::IssuedToken;

pub mod error;
pub use error::TokenError;

/// Authenticates the client: a confidential client by its secret (compared in constant time), a
/// public one by its id alone (PKCE is its proof), never one kind as the other.
pub async fn authenticate(
    state: &AppState,
    credentials: &ClientCredentials,
) -> Result<std::sync::Arc<castellan_store::ClientRow>, TokenError> {
    let client = state
        .client(&credentials.client_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "a client unknown to this replica could not be looked up");
            TokenError::Unavailable
        })?
        .filter(|c| match &credentials.client_secret {
            Some(s) => !c.app.public_client && secret::verify_secret(s, &c.secret_hash),
            None => c.app.public_client,
        })
        .ok_or_else(|| {
            // Debug-formatted: a client id is the sender's text, and a newline in it must not start
            // a line of its own in the log.
            tracing::info!(client_id = ?credentials.client_id.chars().take(64).collect::<String>(), "client authentication failed");
            TokenError::InvalidClient
        })?;
    Ok(client)
}

/// Issues tokens for any grant type the token endpoint takes.
pub async fn issue(
    state: &AppState,
    credentials: &ClientCredentials,
    req: &TokenRequest,
) -> Result<IssuedToken, TokenError> {
    if !["client_credentials", "authorization_code", "refresh_token"]
        .contains(&req.grant_type.as_str())
        && req.grant_type != exchange::GRANT_TYPE
    {
        return Err(TokenError::UnsupportedGrantType);
    }
    let client = authenticate(state, credentials).await?;
    if ["authorization_code", "refresh_token"].contains(&req.grant_type.as_str())
        && let Some(aud) = req.audience.as_deref()
        && aud != audience::default_audience(state, &client)
    {
        // A person's tokens go to the app's default audience; another one is a token exchange.
        return Err(TokenError::InvalidTarget(
            "this grant issues tokens for the client's default audience only (exchange the token for another)".into(),
        ));
    }
    match req.grant_type.as_str() {
        exchange::GRANT_TYPE => exchange::exchange(state, &client, req).await,
        "authorization_code" => {
            let code = req
                .code
                .as_deref()
                .ok_or_else(|| TokenError::InvalidRequest("code is missing".into()))?;
            crate::signin::grants::authorization_code(
                state,
                &client,
                code,
                req.redirect_uri.as_deref(),
                req.code_verifier.as_deref(),
            )
            .await
        }
        "refresh_token" => {
            let token = req
                .refresh_token
                .as_deref()
                .ok_or_else(|| TokenError::InvalidRequest("refresh_token is missing".into()))?;
            crate::signin::grants::refresh(state, &client, token, req.scope.as_deref()).await
        }
        _ => client_credentials(state, &client, req),
    }
}

/// The `client_credentials` grant: a token for the client itself.
fn client_credentials(
    state: &AppState,
    client: &castellan_store::ClientRow,
    req: &TokenRequest,
) -> Result<IssuedToken, TokenError> {
    if client.app.public_client || !client.app.allows_grant("client_credentials") {
        return Err(TokenError::UnauthorizedClient);
    }
    sign_for(state, client, req.scope.as_deref(), req.audience.as_deref())
}

/// Signs an access token for an authenticated `client` (from the store, or mapped from a client
/// assertion, see [`crate::assertion`]) with the scopes it asks for among those it holds, for the
/// audience it asks for among those it may have ([`audience::pick`]).
pub(crate) fn sign_for(
    state: &AppState,
    client: &castellan_store::ClientRow,
    requested_scope: Option<&str>,
    requested_audience: Option<&str>,
) -> Result<IssuedToken, TokenError> {
    let scope = granted_scope(&client.scopes, requested_scope)?;
    let aud = audience::pick(state, client, requested_audience)?;

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
        aud,
        exp: now + ttl,
        iat: now,
        nbf: now,
        jti: secret::random_id("", 16).map_err(|_| TokenError::Internal)?,
        client_id: client.client_id.clone(),
        scope: scope.clone(),
    };
    let access_token = sign_access_token(&key.key, &claims).map_err(|_| TokenError::Internal)?;
    state.metrics().token_issued(key.key.alg());
    state.audit().token_issued(&claims.client_id);
    Ok(IssuedToken {
        access_token,
        expires_in: ttl,
        scope,
        id_token: None,
        refresh_token: None,
    })
}

/// The scopes a token gets: those asked for when the client holds each, every scope it holds when
/// none are asked for.
pub(crate) fn granted_scope(
    client_scopes: &str,
    requested: Option<&str>,
) -> Result<String, TokenError> {
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
