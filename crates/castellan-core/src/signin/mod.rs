//! Sign-in for people, free of I/O: the rules the authorization code flow is built from.
//!
//! [`password`] hashes and checks passwords with argon2id; [`pkce`] checks RFC 7636 `S256` verifiers;
//! [`redirect`] validates redirect URIs at registration and matches them exactly at authorization
//! (loopback ports per RFC 8252 §7.3); [`throttle`] decides when failed sign-ins are slowed down; [`totp`] checks second factors;
//! [`IdClaims`] are the claims of an OpenID Connect ID token. Opaque tokens (codes, refresh tokens,
//! session ids) are random values kept only as SHA-256 ([`crate::secret`]).

pub mod password;
pub mod pkce;
pub mod redirect;
pub mod throttle;
pub mod totp;

use serde::{Deserialize, Serialize};

/// The claims of an ID token (OpenID Connect Core §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// The user's stable id.
    pub sub: String,
    /// The client id.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The `nonce` of the authorization request, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The session id (OpenID Connect Front-Channel/Back-Channel Logout `sid`).
    pub sid: String,
    /// Authentication methods (RFC 8176): `pwd`, and `otp` after a second factor.
    pub amr: Vec<String>,
    /// The signed-in user's name, when the `profile` scope was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The user's e-mail address, when the `email` scope was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Scopes every app that signs people in may ask for, beside the ones it was registered with.
pub const OIDC_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// True for a user name: 1-64 characters of letters, digits, `-`, `_`, `.` and `@`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}
