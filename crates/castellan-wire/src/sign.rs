//! `POST /v1/tokens/sign` and `PUT /v1/clients/{id}/policy` (issue 18): a token signed for an
//! existing service, and the per-client policy that bounds it.

use serde_json::{Map, Value};

/// What a service asks Castellan to sign. Castellan adds `iss iat nbf exp jti`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The token's subject.
    pub sub: String,
    /// The token's audience (one).
    pub aud: String,
    /// Lifetime in seconds (default: the policy's maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<i64>,
    /// Extra claims, by name (only names the policy allows; never a registered one).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub claims: Map<String, Value>,
    /// `at+jwt` or `JWT` (default: the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// A signed token. `Debug` leaves the token out.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct SignedToken {
    /// The compact JWS.
    pub token: String,
    /// The key that signed it.
    pub kid: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `typ`.
    pub typ: String,
    /// Its `exp`, seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for SignedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedToken")
            .field("kid", &self.kid)
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A client's token policy, as set and shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPolicySpec {
    /// Audiences it may have tokens for besides its default one (token requests' `audience` or
    /// `resource`, the signing API's `aud`, a token exchange's target).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The signing API's longest lifetime, seconds (default: `tokens.default_ttl`; never above
    /// `tokens.max_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_max_ttl_secs: Option<i64>,
    /// Extra claim names signed tokens may carry.
    #[serde(default)]
    pub sign_claims: Vec<String>,
    /// The `sub` pattern of signed tokens: `*` matches any run of characters (default: the client's
    /// own id only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_sub: Option<String>,
    /// The `typ` of signed tokens: `at+jwt` (default) or `JWT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_typ: Option<String>,
    /// Audiences of the access tokens it may exchange (RFC 8693); empty: it exchanges none.
    #[serde(default)]
    pub exchange_from: Vec<String>,
}
