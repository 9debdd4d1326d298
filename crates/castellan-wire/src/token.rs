//! `POST /oauth2/token`'s answer (RFC 6749 §5.1).

/// A successful token answer. Fields in alphabetical order: the bytes the server sent before this
/// type existed (a sorted map).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenAnswer {
    /// The JWT.
    pub access_token: String,
    /// Its lifetime, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// The OpenID Connect ID token (authorization code grant with the `openid` scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The refresh token (apps registered for the `refresh_token` grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The scopes it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The type of the token issued by a token exchange (RFC 8693 §2.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

/// Without the token: a `{:?}` in an error or a log line must not leak it.
impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenAnswer {
    /// A bearer token's answer.
    pub fn bearer(access_token: String, expires_in: i64, scope: String) -> Self {
        Self {
            access_token,
            expires_in: Some(expires_in),
            id_token: None,
            refresh_token: None,
            scope: Some(scope),
            token_type: Some("Bearer".into()),
            issued_token_type: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_what_the_server_sent_before() {
        let t = TokenAnswer::bearer("jwt".into(), 300, "a b".into());
        let old = serde_json::json!({"access_token": "jwt", "token_type": "Bearer", "expires_in": 300, "scope": "a b"});
        assert_eq!(serde_json::to_string(&t).expect("json"), old.to_string());
        assert_eq!(
            serde_json::to_string_pretty(&t).expect("json"),
            serde_json::to_string_pretty(&old).expect("json")
        );
    }
}
