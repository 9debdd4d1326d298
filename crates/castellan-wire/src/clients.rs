//! `/v1/clients`: a client to create, a client as listed, a client just created.

/// A client to create (`POST /v1/clients`). Fields in alphabetical order, nulls included: the bytes
/// the CLI sent before this type existed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// `aud` of its tokens; the issuer when unset.
    #[serde(default)]
    pub audience: Option<String>,
    /// Certificate name patterns (`dns:*.svc.local`, `ip:10.0.0.0/8`, `uri:spiffe://…/*`): the only
    /// names it may be issued, within the profile's. Empty: none given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_names: Vec<String>,
    /// Unique name.
    pub name: String,
    /// Scopes it may ask for.
    pub scopes: Vec<String>,
    /// Token lifetime in seconds; the server default when unset.
    #[serde(default)]
    pub token_ttl_secs: Option<i64>,
    /// How it signs people in; absent for a service client (`client_credentials` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppRegistration>,
}

/// What an app that signs people in registers (`client create --redirect-uri … --grant …`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRegistration {
    /// Grant types: `authorization_code`, `refresh_token`, `client_credentials`.
    pub grant_types: Vec<String>,
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (a browser or native app): no secret, PKCE is its proof.
    #[serde(default)]
    pub public: bool,
    /// Its users must sign in with a second factor (TOTP).
    #[serde(default)]
    pub require_mfa: bool,
    /// User claims its tokens carry: `groups`, `email`, or the name of a user's `--claim`.
    #[serde(default)]
    pub user_claims: Vec<String>,
}

/// A client as shown to people (no secret, no hash).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientInfo {
    /// Client id.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Audience, if set.
    pub audience: Option<String>,
    /// Token lifetime, seconds (0: the server default).
    pub token_ttl_secs: i64,
    /// Creation time.
    pub created_at: i64,
    /// How it signs people in, for an app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppRegistration>,
    /// Its certificate name patterns (empty: none).
    #[serde(default)]
    pub cert_names: Vec<String>,
}

/// `GET /v1/clients`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientList {
    /// Every client.
    pub clients: Vec<ClientInfo>,
}

/// A newly created client with its secret, shown once.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CreatedClient {
    /// The client.
    #[serde(flatten)]
    pub client: ClientInfo,
    /// The secret (none for a public client); not stored, only its hash is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
}

impl std::fmt::Debug for CreatedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedClient")
            .field("client", &self.client)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_client_is_what_the_cli_sent_before() {
        let c = NewClient {
            audience: None,
            cert_names: Vec::new(),
            name: "app".into(),
            scopes: vec!["read".into()],
            token_ttl_secs: Some(60),
            app: None,
        };
        let old = serde_json::json!({
            "name": c.name, "scopes": c.scopes, "audience": c.audience, "token_ttl_secs": c.token_ttl_secs,
        });
        assert_eq!(serde_json::to_string(&c).expect("json"), old.to_string());
    }
}
