//! The HTTP API: state, router and handlers. Handlers extract, authorize, make one call and map the
//! error; the token path reads only memory (the key ring and clients are cached and refreshed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use castellan_core::Clock;
use castellan_core::envelope::MasterKey;
use castellan_core::jwt::{AccessClaims, sign_access_token};
use castellan_core::keyring::KeyRing;
use castellan_core::keys::Alg;
use castellan_core::secret;
use castellan_core::secret_store::{self, Access};
use castellan_store::{CertBatcher, ClientRow, Store};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use castellan_core::pki::{IssueRequest, KeyType, Profiles, RevocationReason};

use crate::metrics::Metrics;
use crate::pki::{self, LoadedCa, SetJson};
use crate::secrets::{self, SecretJson};
use crate::service::{self, NewClient, ServiceError};

/// Clock skew allowed when checking `exp` and `nbf` of tokens presented to /v1.
const LEEWAY_SECS: i64 = 60;

/// The profile name recorded for the certificates replicas issue themselves for their own HTTPS.
pub const OWN_TLS_PROFILE: &str = "castellan-tls";

/// Largest request body accepted anywhere.
pub const MAX_BODY: usize = 64 * 1024;

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Token issuer (the public URL).
    pub issuer: String,
    /// JWKS `max-age`, seconds.
    pub jwks_max_age_secs: u64,
    /// Token lifetime when the client has none.
    pub default_ttl_secs: i64,
    /// Longest token lifetime.
    pub max_ttl_secs: i64,
    /// This replica's name.
    pub replica_id: String,
    /// How often the cache is refreshed from the store.
    pub refresh_interval: Duration,
    /// Certificate profiles.
    pub profiles: Arc<Profiles>,
    /// CRL validity (nextUpdate − thisUpdate), seconds.
    pub crl_validity_secs: u64,
    /// CRL distribution point for issued certificates.
    pub crl_url: Option<String>,
    /// Key rotation policy (validated).
    pub rotation: castellan_core::rotation::Policy,
}

struct LoadedRing {
    ring: KeyRing,
    verifiers: HashMap<String, (DecodingKey, Algorithm)>,
    etag: HeaderValue,
    /// The JWKS document, shared by every response (no copy per request).
    jwks: Bytes,
    /// Access tokens whose signature and claims verified with this ring, by the SHA-256 of the token
    /// (see [`authorize`]). Dropped with the ring when its keys change (a revoked key takes its
    /// tokens with it); bounded by [`VERIFIED_TOKENS`].
    verified: Mutex<HashMap<Vec<u8>, Arc<AccessClaims>>>,
}

/// The most verified access tokens remembered per key ring (a digest and a few hundred bytes of claims
/// each); when full, the memory is cleared and refilled.
const VERIFIED_TOKENS: usize = 4096;

struct Inner {
    store: Store,
    /// `Cache-Control` of the JWKS, from the configured max-age.
    jwks_cache_control: HeaderValue,
    /// Records issued certificates in batches (group commit).
    certs: CertBatcher,
    master: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    ring: RwLock<Arc<LoadedRing>>,
    clients: RwLock<Arc<HashMap<String, Arc<ClientRow>>>>,
    ca: RwLock<Arc<LoadedCa>>,
    metrics: Metrics,
    /// One refresh at a time, so a slower one cannot put back what a newer one replaced (a revoked
    /// key, a deleted client).
    refreshing: tokio::sync::Mutex<()>,
    /// Client ids the store did not know, until when (see [`AppState::lookup_client`]).
    unknown_clients: Mutex<HashMap<String, std::time::Instant>>,
    /// Store look-ups of clients the cache does not know, at most this many at once.
    client_lookups: tokio::sync::Semaphore,
}

/// How long a client id the store did not know is answered from memory.
const UNKNOWN_CLIENT_FOR: Duration = Duration::from_secs(2);
/// The most client ids remembered as unknown; when full, the memory is cleared.
const UNKNOWN_CLIENTS: usize = 4096;
/// Concurrent store look-ups of clients missing from the cache.
const CLIENT_LOOKUPS: usize = 4;

/// Shared state of one server process.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.0.settings)
            .finish_non_exhaustive()
    }
}

fn loaded(ring: KeyRing) -> Result<LoadedRing, ServiceError> {
    let mut verifiers = HashMap::new();
    for k in ring.keys() {
        let jwk = k.key.jwk();
        let get = |v: &Option<String>| v.clone().unwrap_or_default();
        let (dk, alg) = match k.key.alg() {
            Alg::RS256 => (
                DecodingKey::from_rsa_components(&get(&jwk.n), &get(&jwk.e)),
                Algorithm::RS256,
            ),
            Alg::ES256 => (
                DecodingKey::from_ec_components(&get(&jwk.x), &get(&jwk.y)),
                Algorithm::ES256,
            ),
            Alg::EdDSA => (
                DecodingKey::from_ed_components(&get(&jwk.x)),
                Algorithm::EdDSA,
            ),
        };
        let dk = dk.map_err(|e| ServiceError::Invalid(format!("key {}: {e}", jwk.kid)))?;
        verifiers.insert(jwk.kid.clone(), (dk, alg));
    }
    let etag = HeaderValue::from_str(&format!("\"{}\"", &ring.fingerprint()[..32]))
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok(LoadedRing {
        jwks: Bytes::copy_from_slice(ring.jwks()),
        ring,
        verifiers,
        etag,
        verified: Mutex::new(HashMap::new()),
    })
}

impl AppState {
    /// Loads the key ring and clients. Fails closed: no key ring, no server.
    pub async fn load(
        store: Store,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Result<Self, ServiceError> {
        let ring = service::load_key_ring(&store, &master, clock.now(), None).await?;
        ring.signing_key(clock.now())?;
        let clients = load_clients(&store).await?;
        let ca = pki::load_ca(&store, &master, settings.crl_url.as_deref()).await?;
        let jwks_cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", settings.jwks_max_age_secs))
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        Ok(Self(Arc::new(Inner {
            jwks_cache_control,
            certs: CertBatcher::spawn(store.clone()),
            store,
            master,
            clock,
            settings,
            ring: RwLock::new(Arc::new(loaded(ring)?)),
            clients: RwLock::new(Arc::new(clients)),
            ca: RwLock::new(Arc::new(ca)),
            metrics: Metrics::default(),
            refreshing: tokio::sync::Mutex::new(()),
            unknown_clients: Mutex::new(HashMap::new()),
            client_lookups: tokio::sync::Semaphore::new(CLIENT_LOOKUPS),
        })))
    }

    /// Reloads the key ring and clients from the store.
    pub async fn refresh(&self) -> Result<(), ServiceError> {
        let _one_at_a_time = self.0.refreshing.lock().await;
        let previous = self.ring();
        let ring = service::load_key_ring(
            &self.0.store,
            &self.0.master,
            self.0.clock.now(),
            Some(&previous.ring),
        )
        .await?;
        if ring.fingerprint() != previous.ring.fingerprint() {
            tracing::info!(
                fingerprint = ring.fingerprint(),
                keys = ring.keys().len(),
                "key ring changed"
            );
            let l = Arc::new(loaded(ring)?);
            if let Ok(mut w) = self.0.ring.write() {
                *w = l;
            }
        }
        let clients = Arc::new(load_clients(&self.0.store).await?);
        if let Ok(mut w) = self.0.clients.write() {
            *w = clients;
        }
        if pki::active_ca_id(&self.0.store).await?.as_deref() != Some(self.ca().id.as_str()) {
            let ca = pki::load_ca(
                &self.0.store,
                &self.0.master,
                self.0.settings.crl_url.as_deref(),
            )
            .await?;
            tracing::info!(ca = %ca.id, subject = ca.issuer.ca_subject(), "issuing CA changed");
            if let Ok(mut w) = self.0.ca.write() {
                *w = Arc::new(ca);
            }
        }
        Ok(())
    }

    fn ca(&self) -> Arc<LoadedCa> {
        match self.0.ca.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The time on this server's clock, unix seconds.
    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }

    /// The store id of the CA this replica issues with now (it follows `pki import-ca` on refresh).
    pub fn issuing_ca_id(&self) -> String {
        self.ca().id.clone()
    }

    /// Records, for `/metrics`, the notAfter of the certificate the HTTPS listener now presents.
    pub fn tls_certificate_presented(&self, not_after: i64) {
        self.0.metrics.tls_certificate(not_after);
    }

    /// Issues this replica's own TLS server certificate (`[tls] mode = "self-issued"`) from the issuing
    /// CA, for exactly the given names: verified and recorded like every certificate, its key returned
    /// to the caller only.
    pub async fn issue_own_certificate(
        &self,
        dns_names: Vec<String>,
        ip_addresses: Vec<std::net::IpAddr>,
        ttl_secs: u64,
    ) -> Result<castellan_core::pki::IssuedSet, ServiceError> {
        let profile = castellan_core::pki::Profile::allow_all(
            OWN_TLS_PROFILE,
            castellan_core::pki::Purpose::Server,
        );
        let req = IssueRequest {
            common_name: None,
            dns_names,
            ip_addresses,
            uris: Vec::new(),
            ttl_secs: Some(ttl_secs),
            key_type: None,
        };
        pki::issue_with(&self.0.certs, &self.ca(), &profile, &req, self.now()).await
    }

    /// Runs the background jobs (key rotation, CRL rebuild before its nextUpdate) on the one replica holding the
    /// `jobs` lease in the store; every job is idempotent, so a replica killed mid-job loses nothing.
    pub fn spawn_jobs(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            // Often enough that a due rotation is never late by more than a quarter of prepublish.
            let every = (state.0.settings.rotation.prepublish / 4).clamp(1, 30);
            let mut tick = tokio::time::interval(Duration::from_secs(every.unsigned_abs()));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = state.run_jobs().await {
                    tracing::warn!(error = %e, "background job failed; it will run again");
                }
            }
        })
    }

    /// One round of background jobs, if this replica holds the lease.
    pub async fn run_jobs(&self) -> Result<bool, ServiceError> {
        let now = self.0.clock.now();
        if !self
            .0
            .store
            .try_lease("jobs", &self.0.settings.replica_id, now, 90)
            .await?
        {
            return Ok(false);
        }
        if crate::keys::rotation_job(
            &self.0.store,
            &self.0.master,
            &self.0.settings.rotation,
            now,
        )
        .await?
        .is_some()
        {
            self.refresh().await?;
        }
        pki::current_crl(
            &self.0.store,
            &self.ca(),
            now,
            self.0.settings.crl_validity_secs,
            self.0.settings.crl_validity_secs / 2,
        )
        .await?;
        Ok(true)
    }

    /// Refreshes every `refresh_interval` until the task is dropped; keeps the last good state on error.
    pub fn spawn_refresh(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state.0.settings.refresh_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = state.refresh().await {
                    tracing::warn!(error = %e, "refresh from the store failed; serving the last loaded key ring");
                }
            }
        })
    }

    fn ring(&self) -> Arc<LoadedRing> {
        match self.0.ring.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn cached_client(&self, id: &str) -> Option<Arc<ClientRow>> {
        let map = match self.0.clients.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        };
        map.get(id).cloned()
    }

    /// A client by id: from memory, or from the store when the cache does not know it yet (created on
    /// another replica since the last refresh).
    async fn client(&self, id: &str) -> Option<Arc<ClientRow>> {
        match self.cached_client(id) {
            Some(c) => Some(c),
            None => self.lookup_client(id).await,
        }
    }

    /// Asks the store for a client the cache does not know. Anyone can send any `client_id` to the
    /// token endpoint, so an id the store did not know is answered from memory for
    /// [`UNKNOWN_CLIENT_FOR`], and at most [`CLIENT_LOOKUPS`] look-ups run at once: a flood of made-up
    /// ids waits its turn instead of taking every connection of the pool.
    async fn lookup_client(&self, id: &str) -> Option<Arc<ClientRow>> {
        if id.is_empty() || id.len() > 128 {
            return None;
        }
        let now = std::time::Instant::now();
        let known_unknown =
            |m: &HashMap<String, std::time::Instant>| m.get(id).is_some_and(|until| *until > now);
        if self
            .0
            .unknown_clients
            .lock()
            .is_ok_and(|m| known_unknown(&m))
        {
            return None;
        }
        let _turn = self.0.client_lookups.acquire().await.ok()?;
        // Another look-up may have answered while this one waited.
        if let Some(c) = self.cached_client(id) {
            return Some(c);
        }
        if self
            .0
            .unknown_clients
            .lock()
            .is_ok_and(|m| known_unknown(&m))
        {
            return None;
        }
        let row = match self.0.store.client(id).await {
            Ok(Some(row)) => Arc::new(row),
            Ok(None) => {
                if let Ok(mut m) = self.0.unknown_clients.lock() {
                    if m.len() >= UNKNOWN_CLIENTS {
                        m.clear();
                    }
                    m.insert(id.to_owned(), now + UNKNOWN_CLIENT_FOR);
                }
                return None;
            }
            Err(_) => return None,
        };
        if let Ok(mut w) = self.0.clients.write() {
            let mut map = HashMap::clone(&w);
            map.insert(row.client_id.clone(), row.clone());
            *w = Arc::new(map);
        }
        Some(row)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The current JWKS fingerprint.
    pub fn fingerprint(&self) -> String {
        self.ring().ring.fingerprint().to_owned()
    }
}

async fn load_clients(store: &Store) -> Result<HashMap<String, Arc<ClientRow>>, ServiceError> {
    Ok(store
        .clients()
        .await?
        .into_iter()
        .map(|c| (c.client_id.clone(), Arc::new(c)))
        .collect())
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/oauth2/token", post(token))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/sys/status", get(status))
        .route("/v1/clients", get(clients_list).post(clients_create))
        .route("/v1/clients/{id}", delete(clients_delete))
        .route("/v1/keys", get(keys_list))
        .route("/v1/keys/plan", get(keys_plan))
        .route("/v1/keys/rotate", post(keys_rotate))
        .route("/v1/keys/import", post(keys_import))
        .route("/v1/keys/{kid}/revoke", post(keys_revoke))
        .route("/v1/pki/issue/{profile}", post(pki_issue))
        .route("/v1/pki/sign/{profile}", post(pki_sign))
        .route("/v1/pki/ca", get(pki_ca))
        .route("/v1/pki/revoke", post(pki_revoke))
        .route("/v1/pki/certs", get(pki_list))
        .route("/v1/pki/crl", get(pki_crl_der))
        .route("/v1/pki/crl.pem", get(pki_crl_pem))
        .route("/v1/secrets", get(secrets_list))
        .route(
            "/v1/secrets/{*name}",
            get(secrets_get).put(secrets_put).delete(secrets_delete),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn count_requests(
    State(state): State<AppState>,
    path: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    state
        .0
        .metrics
        .request(path.as_str(), resp.status().as_u16());
    resp
}

/// A path parameter whose refusal (for example bytes that are not UTF-8) is the API's JSON error.
struct ApiPath<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for ApiPath<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
    }
}

/// A known path with a method it does not take: 405 in the API's JSON error form (axum adds `Allow`).
async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method (see the Allow header)",
    )
    .into_response()
}

async fn not_found(State(state): State<AppState>) -> Response {
    state.0.metrics.request("unmatched", 404);
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}

/// A `/v1` error: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"castellan\""),
            );
        }
        resp
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m)
            }
            ServiceError::NotFound(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{m} not found"))
            }
            ServiceError::Conflict(m) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{m} already exists"),
            ),
            ServiceError::Precondition(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            ServiceError::NotInitialized => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_initialized",
                e.to_string(),
            ),
            ServiceError::Pki(p) => match p {
                castellan_core::pki::PkiError::KeyGeneration
                | castellan_core::pki::PkiError::Build { .. } => {
                    tracing::error!(error = %p, "issuance failed");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "issuance_failed",
                        "the certificate could not be issued",
                    )
                }
                castellan_core::pki::PkiError::UnknownProfile { .. } => {
                    ApiError::new(StatusCode::NOT_FOUND, p.code(), p.to_string())
                }
                other => ApiError::new(StatusCode::BAD_REQUEST, other.code(), other.to_string()),
            },
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service could not complete the request",
                )
            }
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {MAX_BODY} bytes"),
        );
    }
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", r.body_text())
}

// ---- well-known -------------------------------------------------------------------------------

async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ring = state.ring();
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == ring.etag || t.trim() == "*")
        });
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            ring.jwks.clone(),
        )
            .into_response()
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, state.0.jwks_cache_control.clone());
    resp.headers_mut().insert(header::ETAG, ring.etag.clone());
    resp
}

async fn discovery(State(state): State<AppState>) -> Response {
    let iss = &state.0.settings.issuer;
    let ring = state.ring();
    let mut algs: Vec<&str> = ring
        .ring
        .keys()
        .iter()
        .map(|k| k.key.alg().as_str())
        .collect();
    algs.sort_unstable();
    algs.dedup();
    let doc = json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "access_token_signing_alg_values_supported": algs,
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(doc)).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let ring = state.ring();
    match ring.ring.signing_key(state.0.clock.now()) {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "no signing key"})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let ring = state.ring();
    let kid = ring
        .ring
        .signing_key(state.0.clock.now())
        .map(|k| k.key.kid().to_owned())
        .unwrap_or_default();
    let body = state
        .0
        .metrics
        .render(ring.ring.fingerprint(), &kid, ring.ring.keys().len());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

// ---- OAuth2 token endpoint ---------------------------------------------------------------------

/// An RFC 6749 §5.2 error.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn oauth(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        status,
        error,
        description: description.into(),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"castellan\""),
            );
        }
        resp
    }
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match issue_token(&state, &headers, body).await {
        Ok(resp) => resp,
        Err(e) => {
            state.0.metrics.token_refused();
            e.into_response()
        }
    }
}

async fn issue_token(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            oauth(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("the body is over {MAX_BODY} bytes"),
            )
        } else {
            oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body could not be read",
            )
        }
    })?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if std::str::from_utf8(&body).is_err() {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not UTF-8",
        ));
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("parameter `{k}` is repeated"),
            ));
        }
    }

    // Client authentication: exactly one method.
    let basic = headers
        .get(header::AUTHORIZATION)
        .map(parse_basic)
        .transpose()?;
    let post = match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        _ => None,
    };
    let (client_id, client_secret) = match (basic, post) {
        (Some(_), Some(_)) => {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some(b), None) | (None, Some(b)) => b,
        (None, None) => {
            return Err(oauth(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required",
            ));
        }
    };

    let grant = params.get("grant_type").ok_or_else(|| {
        oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        )
    })?;
    if grant != "client_credentials" {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only the client_credentials grant is supported",
        ));
    }

    let client = state
        .client(&client_id)
        .await
        .filter(|c| secret::verify_secret(&client_secret, &c.secret_hash))
        .ok_or_else(|| {
            // Debug-formatted: a client id is the sender's text, and a newline in it must not start
            // a line of its own in the log.
            tracing::info!(client_id = ?client_id.chars().take(64).collect::<String>(), "client authentication failed");
            oauth(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
        })?;

    let allowed: Vec<&str> = client.scopes.split_whitespace().collect();
    let scope = match params.get("scope") {
        None => allowed.join(" "),
        Some(requested) => {
            let asked: Vec<&str> = requested.split(' ').collect();
            if asked.iter().any(|s| !service::valid_scope_token(s)) {
                return Err(oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "the scope parameter is malformed",
                ));
            }
            if let Some(bad) = asked.iter().find(|s| !allowed.contains(s)) {
                return Err(oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("the client may not ask for `{bad}`"),
                ));
            }
            asked.join(" ")
        }
    };

    let now = state.0.clock.now();
    let ring = state.ring();
    let key = ring.ring.signing_key(now).map_err(|_| {
        oauth(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "no signing key is active",
        )
    })?;
    // A client keeps the lifetime it was created with, but never beyond the `tokens.max_ttl` in force
    // now: the key ring's retirement window is checked against that maximum.
    let ttl = if client.token_ttl_secs > 0 {
        client.token_ttl_secs
    } else {
        state.0.settings.default_ttl_secs
    }
    .min(state.0.settings.max_ttl_secs);
    let settings = &state.0.settings;
    let claims = AccessClaims {
        iss: settings.issuer.clone(),
        sub: client.client_id.clone(),
        aud: client
            .audience
            .clone()
            .unwrap_or_else(|| settings.issuer.clone()),
        exp: now + ttl,
        iat: now,
        nbf: now,
        jti: secret::random_id("", 16).map_err(|_| internal())?,
        client_id: client.client_id.clone(),
        scope: scope.clone(),
    };
    let token = sign_access_token(&key.key, &claims).map_err(|_| internal())?;
    state.0.metrics.token_issued(key.key.alg());
    let body =
        json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scope});
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response())
}

fn internal() -> OAuthError {
    oauth(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the token could not be issued",
    )
}

fn parse_basic(value: &HeaderValue) -> Result<(String, String), OAuthError> {
    let bad = || {
        oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "malformed Basic authorization header",
        )
    };
    let v = value.to_str().map_err(|_| bad())?;
    let (scheme, rest) = v.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded.
    let dec = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.to_string())
    };
    Ok((dec(id).ok_or_else(bad)?, dec(secret).ok_or_else(bad)?))
}

// ---- /v1 ---------------------------------------------------------------------------------------

/// Verifies a Bearer access token issued by this Castellan for its own API and checks a scope.
/// `admin` grants every scope; `None` accepts any valid token.
///
/// The token's client must still exist, and the token's scopes count only as far as the client still
/// holds them: deleting a client (or taking a scope away) ends what its tokens may do at once, not when
/// they expire.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    scope: Option<&str>,
) -> Result<Arc<AccessClaims>, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| unauthorized("a Bearer access token is required"))?;
    if token.len() > 8192 {
        return Err(unauthorized("the token is too large"));
    }
    let ring = state.ring();
    // A client sends the same token until it expires: its signature and claims are checked once per
    // key ring, and its SHA-256 remembered (compared as a digest, so lookups say nothing about other
    // tokens). Time, client and scope are checked on every request.
    let digest = secret::hash_secret(token);
    let remembered = ring
        .verified
        .lock()
        .ok()
        .and_then(|m| m.get(&digest).cloned());
    let fresh = remembered.is_none();
    let claims = match remembered {
        Some(claims) => claims,
        None => Arc::new(verify_access_token(state, &ring, token).map_err(unauthorized)?),
    };
    let now = state.0.clock.now();
    if claims.exp + LEEWAY_SECS <= now || claims.nbf - LEEWAY_SECS > now {
        return Err(unauthorized("the token is expired or not yet valid"));
    }
    if fresh && let Ok(mut m) = ring.verified.lock() {
        if m.len() >= VERIFIED_TOKENS {
            m.clear();
        }
        m.insert(digest, claims.clone());
    }
    let client = state
        .client(&claims.client_id)
        .await
        .ok_or_else(|| unauthorized("the token's client no longer exists"))?;
    let claims = held_scopes(claims, &client.scopes);
    if let Some(need) = scope {
        let has = claims.scope.split(' ').any(|s| s == need || s == "admin");
        if !has {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token lacks the `{need}` scope"),
            ));
        }
    }
    Ok(claims)
}

/// The claims with only the scopes the client still holds (the same claims when it holds them all).
fn held_scopes(claims: Arc<AccessClaims>, client_scopes: &str) -> Arc<AccessClaims> {
    let held = |s: &&str| client_scopes.split(' ').any(|c| c == *s);
    if claims.scope.split(' ').all(|s| held(&s)) {
        return claims;
    }
    let scope = claims
        .scope
        .split(' ')
        .filter(held)
        .collect::<Vec<_>>()
        .join(" ");
    Arc::new(AccessClaims {
        scope,
        ..AccessClaims::clone(&claims)
    })
}

/// The signature, type, issuer and audience of an access token (not its times: see [`authorize`]).
fn verify_access_token(
    state: &AppState,
    ring: &LoadedRing,
    token: &str,
) -> Result<AccessClaims, &'static str> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is malformed")?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err("not an access token");
    }
    let (dk, alg) = header
        .kid
        .as_deref()
        .and_then(|kid| ring.verifiers.get(kid))
        .ok_or("the token was signed by an unknown key")?;
    let mut v = Validation::new(*alg);
    v.set_issuer(&[&state.0.settings.issuer]);
    v.set_audience(&[&state.0.settings.issuer]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "nbf"]);
    // Expiry is judged against the state's clock (a parameter), by the caller.
    v.validate_exp = false;
    v.validate_nbf = false;
    jsonwebtoken::decode::<AccessClaims>(token, dk, &v)
        .map(|data| data.claims)
        .map_err(|_| "the token is not valid")
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers, None).await?;
    let ring = state.ring();
    let kid = ring
        .ring
        .signing_key(state.0.clock.now())
        .map(|k| k.key.kid().to_owned())
        .ok();
    Ok(Json(json!({
        "replica_id": state.0.settings.replica_id,
        "store": state.0.store.kind().as_str(),
        "issuer": state.0.settings.issuer,
        "keyring_fingerprint": ring.ring.fingerprint(),
        "current_kid": kid,
        "keys": ring.ring.keys().len(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response())
}

async fn clients_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("clients:admin")).await?;
    Ok(Json(json!({"clients": service::list_clients(&state.0.store).await?})).into_response())
}

async fn clients_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewClient>, JsonRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &headers, Some("clients:admin")).await?;
    let Json(req) = body.map_err(json_rejection)?;
    if let Some(s) = req
        .scopes
        .iter()
        .find(|s| !service::may_grant(&caller.scope, s))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the token cannot give `{s}`: a client is given Castellan's own scopes only by a caller that holds them"
            ),
        ));
    }
    let created = service::create_client(
        &state.0.store,
        req,
        state.0.settings.max_ttl_secs,
        state.0.clock.now(),
    )
    .await?;
    // Make the new client usable on this replica at once.
    let _ = state.refresh().await;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    )
        .into_response())
}

async fn clients_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("clients:admin")).await?;
    service::delete_client(&state.0.store, &id).await?;
    let _ = state.refresh().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- /v1/pki ------------------------------------------------------------------------------------

fn set_response(set: &castellan_core::pki::IssuedSet) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(SetJson::from(set)),
    )
        .into_response()
}

async fn pki_issue(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(profile): ApiPath<String>,
    body: Result<Json<IssueRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("pki:issue")).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let set = pki::issue(
        &state.0.certs,
        &state.ca(),
        &state.0.settings.profiles,
        &profile,
        &req,
        state.0.clock.now(),
    )
    .await?;
    tracing::info!(serial = %set.serial_hex, profile, "issued a certificate");
    Ok(set_response(&set))
}

/// `POST /v1/pki/sign/{profile}`: a CSR and, optionally, the names and lifetime to give it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    csr: String,
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    ip_addresses: Vec<std::net::IpAddr>,
    #[serde(default)]
    uris: Vec<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
    #[serde(default)]
    key_type: Option<KeyType>,
}

async fn pki_sign(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(profile): ApiPath<String>,
    body: Result<Json<SignBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("pki:issue")).await?;
    let Json(b) = body.map_err(json_rejection)?;
    let req = IssueRequest {
        common_name: b.common_name,
        dns_names: b.dns_names,
        ip_addresses: b.ip_addresses,
        uris: b.uris,
        ttl_secs: b.ttl_secs,
        key_type: b.key_type,
    };
    let set = pki::sign_csr(
        &state.0.certs,
        &state.ca(),
        &state.0.settings.profiles,
        &profile,
        &b.csr,
        &req,
        state.0.clock.now(),
    )
    .await?;
    tracing::info!(serial = %set.serial_hex, profile, "signed a CSR");
    Ok(set_response(&set))
}

/// Public: the trust anchors are not secret.
async fn pki_ca(State(state): State<AppState>) -> Response {
    let ca = state.ca();
    Json(json!({
        "root_pem": ca.issuer.root_pem(),
        "ca_bundle_pem": ca.issuer.ca_bundle_pem(),
        "issuing_ca_pem": ca.issuer.ca_cert_pem(),
        "issuing_ca_subject": ca.issuer.ca_subject(),
        "issuing_ca_not_after": ca.issuer.ca_not_after(),
    }))
    .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    serial: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn pki_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RevokeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("pki:revoke")).await?;
    let Json(b) = body.map_err(json_rejection)?;
    let reason = b
        .reason
        .as_deref()
        .map(str::parse::<RevocationReason>)
        .transpose()
        .map_err(ServiceError::from)?;
    let (outcome, crl) = pki::revoke(
        &state.0.store,
        &state.ca(),
        &b.serial,
        reason,
        state.0.clock.now(),
        state.0.settings.crl_validity_secs,
    )
    .await?;
    let status = if outcome == castellan_store::Revocation::Revoked {
        "revoked"
    } else {
        "already_revoked"
    };
    tracing::info!(serial = %b.serial, status, "revocation");
    Ok(Json(json!({"serial": pki::normalize_serial(&b.serial)?, "status": status, "crl_number": crl.crl_number})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    expiring_within: Option<i64>,
}

async fn pki_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("pki:read")).await?;
    let q = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let certs = pki::list(&state.0.store, q.expiring_within, state.0.clock.now()).await?;
    Ok(Json(json!({"certificates": certs})).into_response())
}

// ---- /v1/secrets --------------------------------------------------------------------------------

/// A valid token whose scopes allow `access` to `name` (see [`secret_store::scopes_allow`]).
async fn authorize_secret(
    state: &AppState,
    headers: &HeaderMap,
    access: Access,
    name: &str,
) -> Result<Arc<AccessClaims>, ApiError> {
    let claims = authorize(state, headers, None).await?;
    if secret_store::scopes_allow(&claims.scope, access, name) {
        return Ok(claims);
    }
    let verb = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "the token lacks the `secrets:{verb}` scope (or `secrets:{verb}:PREFIX` covering this name)"
        ),
    ))
}

/// The secrets the token may read: all with `secrets:read`, else those its prefix scopes cover.
async fn secrets_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = authorize(&state, &headers, None).await?;
    if !secret_store::scopes_allow_any(&claims.scope, Access::Read) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token lacks the `secrets:read` scope (or a `secrets:read:PREFIX`)",
        ));
    }
    let list: Vec<_> = secrets::list(&state.0.store)
        .await?
        .into_iter()
        .filter(|s| secret_store::scopes_allow(&claims.scope, Access::Read, &s.name))
        .collect();
    Ok(Json(json!({"secrets": list})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    version: Option<i64>,
}

async fn secrets_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    query: Result<axum::extract::Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let claims = authorize_secret(&state, &headers, Access::Read, &name).await?;
    let q = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let s = secrets::get(&state.0.store, &state.0.master, &name, q.version).await?;
    tracing::info!(secret = %s.meta.name, version = s.meta.version, client_id = %claims.client_id, "read a secret");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(SecretJson::from(&s)),
    )
        .into_response())
}

async fn secrets_put(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
    body: Result<Json<secrets::PutSecret>, JsonRejection>,
) -> Result<Response, ApiError> {
    let claims = authorize_secret(&state, &headers, Access::Write, &name).await?;
    let Json(req) = body.map_err(json_rejection)?;
    let meta = secrets::put(
        &state.0.store,
        &state.0.master,
        &name,
        &req.bytes()?,
        req.cas,
        state.0.clock.now(),
    )
    .await?;
    tracing::info!(secret = %meta.name, version = meta.version, client_id = %claims.client_id, "wrote a secret");
    Ok(Json(meta).into_response())
}

async fn secrets_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let claims = authorize_secret(&state, &headers, Access::Write, &name).await?;
    secrets::delete(&state.0.store, &name).await?;
    tracing::info!(secret = %name, client_id = %claims.client_id, "deleted a secret");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn crl(state: &AppState) -> Result<castellan_store::CrlRow, ApiError> {
    Ok(pki::current_crl(
        &state.0.store,
        &state.ca(),
        state.0.clock.now(),
        state.0.settings.crl_validity_secs,
        0,
    )
    .await?)
}

/// Public, as a CRL distribution point must be.
async fn pki_crl_der(State(state): State<AppState>) -> Result<Response, ApiError> {
    let c = crl(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], c.der).into_response())
}

async fn pki_crl_pem(State(state): State<AppState>) -> Result<Response, ApiError> {
    let c = crl(&state).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], c.pem).into_response())
}

// ---- /v1/keys -----------------------------------------------------------------------------------

async fn keys_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    Ok(
        Json(json!({"keys": crate::keys::list(&state.0.store, state.0.clock.now()).await?}))
            .into_response(),
    )
}

async fn keys_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    let events = crate::keys::plan(
        &state.0.store,
        &state.0.settings.rotation,
        state.0.clock.now(),
    )
    .await?;
    Ok(Json(json!({"events": events})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    now: bool,
}

async fn keys_rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RotateBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    let Json(b) = body.map_err(json_rejection)?;
    let (store, master, policy, now) = (
        &state.0.store,
        &state.0.master,
        &state.0.settings.rotation,
        state.0.clock.now(),
    );
    let key = if b.now {
        crate::keys::rotate_now(store, master, policy, now).await?
    } else {
        crate::keys::schedule_rotation(store, master, policy, now).await?
    };
    let _ = state.refresh().await;
    Ok(Json(key).into_response())
}

async fn keys_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(kid): ApiPath<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Some("keys:admin")).await?;
    crate::keys::revoke(&state.0.store, &kid, state.0.clock.now()).await?;
    let _ = state.refresh().await;
    Ok(Json(json!({"kid": kid, "status": "revoked"})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    pem: String,
    #[serde(default)]
    state: Option<String>,
}

async fn keys_import(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ImportBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    // An imported key is one its owner knows: whoever imports one can sign tokens this server and
    // every verifier accept, for any scope. Only `admin`, which already has every scope, may.
    authorize(&state, &headers, Some("admin")).await?;
    let Json(b) = body.map_err(json_rejection)?;
    let as_current = match b.state.as_deref() {
        None | Some("retired") => false,
        Some("current") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("state `{other}`: expected current or retired"),
            ));
        }
    };
    let key = crate::keys::import(
        &state.0.store,
        &state.0.master,
        &b.pem,
        as_current,
        &state.0.settings.rotation,
        state.0.clock.now(),
    )
    .await?;
    let _ = state.refresh().await;
    Ok(Json(key).into_response())
}
