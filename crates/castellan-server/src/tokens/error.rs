//! Why no token was issued: the token endpoint's refusals, shared by every grant.

/// Why no token was issued (RFC 6749 §5.2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The grant type is not one Castellan issues for.
    #[error(
        "the grant type must be client_credentials, authorization_code, refresh_token or urn:ietf:params:oauth:grant-type:token-exchange"
    )]
    UnsupportedGrantType,
    /// The client is not registered for this grant type.
    #[error("the client is not registered for this grant type")]
    UnauthorizedClient,
    /// A code or refresh token that is not (or no longer) valid.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// A parameter is missing or malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// Unknown client or wrong secret (which of the two is not said).
    #[error("client authentication failed")]
    InvalidClient,
    /// The scope parameter is not a list of scope-tokens.
    #[error("the scope parameter is malformed")]
    MalformedScope,
    /// The client may not ask for this scope.
    #[error("the client may not ask for `{0}`")]
    ScopeNotAllowed(String),
    /// The requested audience (`audience` or `resource`) is not one the client may have (RFC 8707).
    #[error("{0}")]
    InvalidTarget(String),
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
