//! The rows the store reads and writes, as plain structs (no behaviour beyond redacting `Debug`).

/// The latest expiry among the certificates issued for one set of names (see
/// [`Store::newest_expiry_by_names`](crate::Store::newest_expiry_by_names)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesExpiry {
    /// The profile.
    pub profile: String,
    /// The common name, if any.
    pub common_name: Option<String>,
    /// The SANs, as stored (`dns:… ip:…`).
    pub sans: String,
    /// The latest `not_after` of those not revoked.
    pub newest_not_after: i64,
}

/// A stored data key, wrapped by the master key.
#[derive(Debug, Clone)]
pub struct DataKeyRow {
    /// Its id, recorded beside every value it seals.
    pub id: String,
    /// The key sealed by the master key.
    pub wrapped: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored token signing key.
#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// JOSE algorithm name.
    pub alg: String,
    /// The data key that sealed the private key.
    pub dek_id: String,
    /// PKCS#8, sealed.
    pub sealed_key: Vec<u8>,
    /// When it starts signing.
    pub activate_at: i64,
    /// When it leaves the JWKS.
    pub remove_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored OAuth client.
#[derive(Debug, Clone)]
pub struct ClientRow {
    /// The public id.
    pub client_id: String,
    /// A unique human name.
    pub name: String,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    /// Space-separated scopes the client may ask for.
    pub scopes: String,
    /// The `aud` of its tokens (the issuer when unset).
    pub audience: Option<String>,
    /// Token lifetime.
    pub token_ttl_secs: i64,
    /// Creation time.
    pub created_at: i64,
    /// How it signs people in, when it is an app that does.
    pub app: ClientApp,
    /// The certificate names it may ask for: space-separated `dns:`, `ip:` and `uri:` patterns
    /// (`None`: none given).
    pub cert_names: Option<String>,
    /// Its token policy (audiences, signing API bounds, token exchange), when one is set.
    pub policy: Option<ClientPolicy>,
}

/// A client's token policy (issue 18): every list space-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientPolicy {
    /// Audiences it may ask for besides its default one (`audience`/`resource`, the signing API's
    /// `aud`, a token exchange's target).
    pub audiences: String,
    /// The longest lifetime the signing API gives its tokens, seconds (0: `tokens.default_ttl`).
    pub sign_max_ttl_secs: i64,
    /// Extra claim names the signing API may put in its tokens.
    pub sign_claims: String,
    /// The `sub` pattern of signed tokens (`*` matches any run of characters; empty: the client's id).
    pub sign_sub: String,
    /// The `typ` of signed tokens: `at+jwt` or `JWT`.
    pub sign_typ: String,
    /// Audiences of the access tokens it may exchange (RFC 8693); empty: none.
    pub exchange_from: String,
}

/// What a client that signs people in is registered with (all empty for a service client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientApp {
    /// Space-separated exact redirect URIs.
    pub redirect_uris: String,
    /// Space-separated URIs RP-initiated logout may return to.
    pub post_logout_redirect_uris: String,
    /// Space-separated grant types (`client_credentials`, `authorization_code`, `refresh_token`).
    pub grant_types: String,
    /// A public client: no secret, PKCE is its proof.
    pub public_client: bool,
    /// Users of this app must sign in with a second factor.
    pub require_mfa: bool,
    /// Space-separated user claims its tokens carry (`groups`, `email`, or a claim set with `--claim`).
    pub user_claims: String,
}

impl Default for ClientApp {
    fn default() -> Self {
        Self {
            redirect_uris: String::new(),
            post_logout_redirect_uris: String::new(),
            grant_types: "client_credentials".into(),
            public_client: false,
            require_mfa: false,
            user_claims: String::new(),
        }
    }
}

impl ClientApp {
    /// Whether it may use a grant type.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.split(' ').any(|g| g == grant)
    }
}

/// A replica's heartbeat: when it last refreshed from the store and which key ring it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The replica's id (`replica_id`).
    pub replica_id: String,
    /// When, milliseconds since the epoch on the replica's clock.
    pub seen_at_ms: i64,
    /// How often it beats, milliseconds (its refresh interval).
    pub every_ms: i64,
    /// SHA-256 of the JWKS it serves (as in `/v1/sys/status`).
    pub fingerprint: String,
    /// The kids of that JWKS, space-separated.
    pub kids: String,
}

/// Everything `castellan init` creates, written in one transaction or not at all.
#[derive(Debug)]
pub struct InitBundle {
    /// The master key's check value.
    pub master_key_check: String,
    /// The first data key.
    pub data_key: DataKeyRow,
    /// The first signing key.
    pub signing_key: SigningKeyRow,
    /// The admin client.
    pub admin_client: ClientRow,
    /// Extra meta rows (name, value).
    pub meta: Vec<(String, String)>,
    /// The CA hierarchy.
    pub ca: CaRow,
}

/// A stored issuing CA with its chain. The newest row is the one that issues.
#[derive(Debug, Clone)]
pub struct CaRow {
    /// Id (random).
    pub id: String,
    /// The issuing CA certificate, PEM.
    pub ca_cert_pem: String,
    /// CA certificates between it and the root, PEM (may be empty).
    pub intermediates_pem: String,
    /// The root, PEM.
    pub root_pem: String,
    /// The data key that sealed the keys.
    pub dek_id: String,
    /// The issuing CA's PKCS#8 key, sealed.
    pub sealed_key: Vec<u8>,
    /// The root's key, sealed; `None` when it is kept offline or was never ours.
    pub root_sealed_key: Option<Vec<u8>>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The CA that issued it.
    pub ca_id: String,
    /// Profile name.
    pub profile: String,
    /// Subject CN.
    pub common_name: Option<String>,
    /// SANs as space-separated text.
    pub sans: String,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Revocation time.
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name.
    pub revocation_reason: Option<String>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored CRL.
#[derive(Debug, Clone)]
pub struct CrlRow {
    /// The CA that signed it.
    pub ca_id: String,
    /// Its CRL number.
    pub crl_number: i64,
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// thisUpdate.
    pub this_update: i64,
    /// nextUpdate.
    pub next_update: i64,
}

/// One stored version of a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// The secret's name.
    pub name: String,
    /// Its version, from 1.
    pub version: i64,
    /// The data key that sealed the value.
    pub dek_id: String,
    /// The value, sealed.
    pub sealed_value: Vec<u8>,
    /// When this version was written.
    pub created_at: i64,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("dek_id", &self.dek_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A secret as listed (also the JSON of `GET /v1/secrets` and `castellan secret list`): never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretSummary {
    /// The secret's name.
    pub name: String,
    /// Its newest version.
    pub version: i64,
    /// How many versions are kept.
    pub versions: i64,
    /// When the newest version was written.
    pub updated_at: i64,
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now.
    Revoked,
    /// It was revoked before; nothing changed.
    AlreadyRevoked,
    /// No certificate has that serial.
    NotFound,
}

/// A store's schema against the migrations this binary carries ([`Store::schema_status`](crate::Store::schema_status)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The versions applied to the database, in order; empty when it holds no Castellan schema.
    pub applied: Vec<i64>,
    /// Versions this binary carries that the database lacks: a server of this version applies them.
    pub missing: Vec<i64>,
    /// Versions in the database this binary does not know: a newer Castellan migrated it.
    pub unknown: Vec<i64>,
}

/// What the store says about a master key's check value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeyCheck {
    /// The store has never been initialized.
    Uninitialized,
    /// The value matches.
    Matches,
    /// The store was initialized with another master key.
    Mismatch,
}

/// A person who signs in.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Stable id (`usr_…`): the `sub` of their tokens.
    pub user_id: String,
    /// Unique sign-in name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// argon2id PHC string; `None`: no password sign-in.
    pub password_hash: Option<String>,
    /// Space-separated groups.
    pub groups: String,
    /// Claims as a JSON object.
    pub claims: String,
    /// When disabled, if it is.
    pub disabled_at: Option<i64>,
    /// The data key that sealed the TOTP secret.
    pub totp_dek_id: Option<String>,
    /// The TOTP secret, sealed; `None` until enrolled.
    pub totp_sealed: Option<Vec<u8>>,
    /// Must sign in with a second factor.
    pub totp_required: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("disabled_at", &self.disabled_at)
            .field("totp", &self.totp_sealed.is_some())
            .finish_non_exhaustive()
    }
}

/// A signed-in browser's session. The cookie's value is kept only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Public id (the `sid` claim).
    pub sid: String,
    /// SHA-256 of the cookie's value.
    pub secret_hash: Vec<u8>,
    /// The user.
    pub user_id: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Space-separated RFC 8176 methods (`pwd`, `pwd otp`).
    pub amr: String,
    /// The password was right and a second factor is still to come.
    pub pending_mfa: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last use.
    pub last_seen_at: i64,
    /// Absolute end.
    pub expires_at: i64,
    /// When it was ended (logout, user disabled), if it was.
    pub ended_at: Option<i64>,
}

/// An authorization code. The code itself is kept only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// The app it was issued to.
    pub client_id: String,
    /// The user.
    pub user_id: String,
    /// The session.
    pub sid: String,
    /// The redirect URI of the request.
    pub redirect_uri: String,
    /// PKCE `S256` challenge.
    pub code_challenge: String,
    /// Granted scopes.
    pub scope: String,
    /// The request's nonce.
    pub nonce: Option<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Methods.
    pub amr: String,
    /// Creation time.
    pub created_at: i64,
    /// End of validity.
    pub expires_at: i64,
    /// When it was redeemed, if it was.
    pub used_at: Option<i64>,
    /// The grant its redemption started.
    pub grant_id: Option<String>,
}

/// A grant: the family of refresh tokens one code exchange started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// Id.
    pub grant_id: String,
    /// The app.
    pub client_id: String,
    /// The user.
    pub user_id: String,
    /// The session it came from.
    pub sid: String,
    /// Granted scopes.
    pub scope: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Methods.
    pub amr: String,
    /// Creation time.
    pub created_at: i64,
    /// Absolute end (no refresh beyond it).
    pub expires_at: i64,
    /// When revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Why (`reuse`, `revoked`, `logout`, `user-disabled`, `code-reuse`).
    pub revoked_why: Option<String>,
}

/// A refresh token of a grant. The token itself is kept only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// Its family.
    pub grant_id: String,
    /// Creation time.
    pub created_at: i64,
    /// End of validity (the idle lifetime, never past the grant's end).
    pub expires_at: i64,
    /// When it was rotated (used), if it was.
    pub used_at: Option<i64>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used, and the new one stored; the grant is returned, with
    /// its user as the same transaction read it (`None`: deleted).
    Rotated {
        /// The token's family.
        grant: Box<GrantRow>,
        /// The grant's user.
        user: Option<Box<UserRow>>,
    },
    /// The token had been rotated already: the whole family is now revoked.
    Reused,
    /// Unknown, expired, or its family is revoked or over.
    Invalid,
}

/// What redeeming a code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Redeemed now; its grant was stored.
    Redeemed,
    /// Redeemed before: what that redemption issued is now revoked.
    Reused,
}
