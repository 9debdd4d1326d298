//! What the token endpoint hands out, for every grant.

use zeroize::Zeroizing;

/// An issued access token (with an ID token and a refresh token for the grants people use).
pub struct IssuedToken {
    /// The JWT.
    pub access_token: String,
    /// Its lifetime, seconds.
    pub expires_in: i64,
    /// The scopes it carries.
    pub scope: String,
    /// The ID token.
    pub id_token: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}
