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
    /// The secret; not stored, only its hash is.
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
        };
        let old = serde_json::json!({
            "name": c.name, "scopes": c.scopes, "audience": c.audience, "token_ttl_secs": c.token_ttl_secs,
        });
        assert_eq!(serde_json::to_string(&c).expect("json"), old.to_string());
    }
}
