//! One upstream OpenID Connect provider as Castellan's client of it: its discovery document (cached),
//! its keys (the JWKS cache of [`crate::assertion`]), the code exchange at its token endpoint, and
//! the checks of the ID token it returns.
//!
//! The ID token is checked with jsonwebtoken: the header's `alg` against the entry's allow-list
//! (never `none` or HMAC), the signature against the provider's JWKS (by `kid`), `iss` (exactly the
//! configured issuer), `aud` (Castellan's client id; `azp` too when there are several), `exp` and
//! `iat` on the server's clock, and the `nonce` this sign-in sent (constant-time).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::assertion::keys::IssuerKeys;
use crate::config::{IdentityProviderConfig, TrustedIssuerConfig};

/// Clock skew allowed on `exp` and `iat`, seconds.
pub const LEEWAY_SECS: i64 = 60;
/// The longest discovery document or token response read.
const MAX_BODY: usize = 64 * 1024;
/// How long a discovery document is used before it is read again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(600);

/// Why an upstream ID token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Not a JWT, or a claim is missing or of the wrong type.
    #[error("the provider's ID token is malformed")]
    Malformed,
    /// Signed with an algorithm the entry does not accept.
    #[error("the provider's ID token is signed with an algorithm that is not accepted")]
    Algorithm,
    /// No key of the provider's JWKS fits (`kid` and algorithm).
    #[error("the provider's ID token names a key the provider does not publish")]
    UnknownKey,
    /// The signature does not verify: the token was altered or not signed by the provider.
    #[error(
        "the provider's ID token signature does not verify: it was altered or not signed by the provider"
    )]
    Signature,
    /// `iss` is not the configured issuer.
    #[error("the ID token was issued by another issuer than the configured provider")]
    Issuer,
    /// `aud` (or `azp`) is not Castellan's client id.
    #[error("the ID token was issued to another client, not to Castellan")]
    Audience,
    /// `exp` has passed, or `iat` is in the future.
    #[error("the provider's ID token has expired (or is not valid yet)")]
    Expired,
    /// `nonce` is missing or not the one this sign-in sent.
    #[error("the ID token does not belong to this sign-in (its nonce differs)")]
    Nonce,
}

/// The claims of a checked ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    /// The upstream subject.
    pub sub: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: Option<i64>,
    /// The nonce.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Authorized party.
    #[serde(default)]
    pub azp: Option<String>,
    /// The audience (one or many).
    pub aud: Audience,
    /// Every other claim (mapped to the user's name, e-mail and groups).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// `aud`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// The endpoints of the provider's discovery document Castellan uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where the browser is sent.
    pub authorization_endpoint: String,
    /// Where the code is exchanged.
    pub token_endpoint: String,
}

/// Why talking to the provider failed (logged; the person sees a plain page).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

/// One configured provider.
pub struct UpstreamProvider {
    /// The entry.
    pub cfg: IdentityProviderConfig,
    secret: Zeroizing<String>,
    http: reqwest::Client,
    algorithms: Vec<Algorithm>,
    keys: IssuerKeys,
    endpoints: tokio::sync::RwLock<Option<(Arc<Endpoints>, Instant)>>,
}

impl std::fmt::Debug for UpstreamProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamProvider")
            .field("name", &self.cfg.name)
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

impl UpstreamProvider {
    /// Builds a provider from a validated entry and its client secret (read from
    /// `client_secret_file` by the caller); nothing is fetched yet.
    pub fn new(cfg: IdentityProviderConfig, secret: Zeroizing<String>) -> Result<Self, String> {
        let mut algorithms = Vec::new();
        for a in cfg.algorithms() {
            algorithms.push(Algorithm::from_str(&a).map_err(|_| format!("algorithm {a}"))?);
        }
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &cfg.ca_file {
            b = castellan_wire::client::trust_only(b, ca).map_err(|e| format!("ca_file {e}"))?;
        }
        let keys = IssuerKeys::new(&TrustedIssuerConfig {
            issuer: cfg.issuer.clone(),
            discovery: true,
            jwks_url: None,
            jwks_file: None,
            ca_file: cfg.ca_file.clone(),
            bearer_token_file: None,
            audience: cfg.client_id.clone(),
            subject: "*".into(),
            pod: None,
            client_id: cfg.name.clone(),
            scopes: Vec::new(),
            token_audience: None,
            token_ttl: None,
            algorithms: Some(cfg.algorithms()),
        })?;
        Ok(Self {
            http: b.build().map_err(|e| e.to_string())?,
            secret,
            algorithms,
            keys,
            endpoints: tokio::sync::RwLock::new(None),
            cfg,
        })
    }

    /// Reads the provider's client secret file: one line, surrounding white space dropped.
    pub fn read_secret(cfg: &IdentityProviderConfig) -> Result<Zeroizing<String>, String> {
        let raw = Zeroizing::new(
            std::fs::read_to_string(&cfg.client_secret_file)
                .map_err(|e| format!("{}: {e}", cfg.client_secret_file.display()))?,
        );
        let s = Zeroizing::new(raw.trim().to_owned());
        if s.is_empty() {
            return Err(format!("{} is empty", cfg.client_secret_file.display()));
        }
        Ok(s)
    }

    /// The provider's endpoints (discovery, cached for [`DISCOVERY_MAX_AGE`]).
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, ProviderError> {
        if let Some((e, at)) = &*self.endpoints.read().await
            && at.elapsed() < DISCOVERY_MAX_AGE
        {
            return Ok(e.clone());
        }
        let mut w = self.endpoints.write().await;
        if let Some((e, at)) = &*w
            && at.elapsed() < DISCOVERY_MAX_AGE
        {
            return Ok(e.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let body = self.read(self.http.get(&url), &url).await?;
        let e: Endpoints = serde_json::from_slice(&body)
            .map_err(|e| ProviderError(format!("{url}: not an OpenID configuration: {e}")))?;
        if e.issuer != self.cfg.issuer {
            return Err(ProviderError(format!(
                "{url} names the issuer `{}`, not `{}`",
                e.issuer, self.cfg.issuer
            )));
        }
        let e = Arc::new(e);
        *w = Some((e.clone(), Instant::now()));
        Ok(e)
    }

    async fn read(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        let fail = |m: String| ProviderError(format!("{url}: {m}"));
        let mut resp = req.send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(fail(format!("over {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // The provider's error code only (its description may echo what was sent).
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(fail(format!("HTTP {status} {}", code.escape_debug())));
        }
        Ok(body)
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the provider's ID token.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Zeroizing<String>, ProviderError> {
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
        }
        let ep = self.endpoints().await?;
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let req = self
            .http
            .post(&ep.token_endpoint)
            // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
            .basic_auth(enc(&self.cfg.client_id), Some(enc(&self.secret)))
            .header("accept", "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ]);
        let body = Zeroizing::new(self.read(req, &ep.token_endpoint).await?);
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| ProviderError("the token response is not JSON".into()))?;
        t.id_token
            .map(Zeroizing::new)
            .ok_or_else(|| ProviderError("the token response holds no id_token".into()))
    }

    /// Checks an ID token for this provider, this sign-in's `nonce`, at `now`.
    pub async fn check_id_token(
        &self,
        token: &str,
        nonce: &str,
        now: i64,
    ) -> Result<IdClaims, IdTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(IdTokenError::Algorithm);
        }
        let key = self
            .keys
            .key(header.kid.as_deref(), header.alg)
            .await
            .ok_or(IdTokenError::UnknownKey)?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // exp and iat are checked on the server's clock below.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key.key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => IdTokenError::Signature,
                    K::InvalidIssuer => IdTokenError::Issuer,
                    K::InvalidAudience => IdTokenError::Audience,
                    K::InvalidAlgorithm => IdTokenError::Algorithm,
                    _ => IdTokenError::Malformed,
                }
            })?
            .claims;
        check_claims(&claims, &self.cfg.client_id, nonce, now)?;
        Ok(claims)
    }
}

/// The checks jsonwebtoken leaves to the caller: `azp` with several audiences, `exp` and `iat` on
/// the server's clock, and the nonce.
pub fn check_claims(
    c: &IdClaims,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), IdTokenError> {
    if let Audience::Many(v) = &c.aud
        && v.len() > 1
        && c.azp.as_deref() != Some(client_id)
    {
        return Err(IdTokenError::Audience);
    }
    if c.exp + LEEWAY_SECS <= now || c.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
        return Err(IdTokenError::Expired);
    }
    match &c.nonce {
        Some(n) if bool::from(n.as_bytes().ct_eq(nonce.as_bytes())) => Ok(()),
        _ => Err(IdTokenError::Nonce),
    }
}

/// Every configured provider, in file order.
#[derive(Debug, Default)]
pub struct UpstreamProviders {
    list: Vec<Arc<UpstreamProvider>>,
}

impl UpstreamProviders {
    /// The providers.
    pub fn new(list: Vec<UpstreamProvider>) -> Self {
        Self {
            list: list.into_iter().map(Arc::new).collect(),
        }
    }

    /// The provider with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<UpstreamProvider>> {
        self.list.iter().find(|p| p.cfg.name == name)
    }

    /// (name, display name) of each, for the login page.
    pub fn choices(&self) -> Vec<(String, String)> {
        self.list
            .iter()
            .map(|p| (p.cfg.name.clone(), p.cfg.display_name().to_owned()))
            .collect()
    }
}
