//! The state of one server process: the store, the master key, and what is cached from the store
//! (key ring, clients, issuing CA), refreshed from it. The token path reads only this memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use castellan_core::Clock;
use castellan_core::envelope::MasterKey;
use castellan_core::pki::{IssueRequest, Profiles};
use castellan_core::token::AccessClaims;
use castellan_core::token::Alg;
use castellan_core::token::KeyRing;
use castellan_store::{CertBatcher, ClientRow, RefreshBatcher, Store};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::pki::{self, LoadedCa};

mod jobs;
mod refresh;

/// The profile name recorded for the certificates replicas issue themselves for their own HTTPS.
pub const OWN_TLS_PROFILE: &str = "castellan-tls";

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
    pub rotation: castellan_core::token::Policy,
    /// How people sign in.
    pub signin: crate::signin::SigninSettings,
    /// Which certificate names callers may be issued beyond the profiles (see [`crate::cert_names`]).
    pub cert_names: CertNamePolicy,
}

/// How a server bounds certificate names beyond the profiles.
#[derive(Debug, Clone, Default)]
pub struct CertNamePolicy {
    /// `serve --dev`: a client without patterns is bounded by the profile alone.
    pub dev: bool,
    /// Castellan's own API names (DNS names, lowercase, and IP addresses), never issued to a caller.
    pub castellan_names: Vec<String>,
    /// `pki.issue_castellan_names`: issue them anyway.
    pub issue_castellan_names: bool,
}

/// The key ring as served: parsed verifiers, the JWKS bytes and their ETag, computed once per change.
pub(crate) struct LoadedRing {
    pub(crate) ring: KeyRing,
    pub(crate) verifiers: HashMap<String, (DecodingKey, Algorithm)>,
    pub(crate) etag: HeaderValue,
    /// The JWKS document, shared by every response (no copy per request).
    pub(crate) jwks: Bytes,
    /// Access tokens whose signature and claims verified with this ring, by the SHA-256 of the token
    /// (see [`authorize`]). Dropped with the ring when its keys change (a revoked key takes its
    /// tokens with it); bounded by [`VERIFIED_TOKENS`].
    pub(crate) verified: Mutex<HashMap<Vec<u8>, Arc<AccessClaims>>>,
}

/// The most verified access tokens remembered per key ring (a digest and a few hundred bytes of claims
/// each); when full, the memory is cleared and refilled.
pub(crate) const VERIFIED_TOKENS: usize = 4096;

struct Inner {
    store: Store,
    /// `Cache-Control` of the JWKS, from the configured max-age.
    jwks_cache_control: HeaderValue,
    /// Records issued certificates in batches (group commit).
    certs: CertBatcher,
    /// Rotates refresh tokens in batches (group commit).
    refreshes: RefreshBatcher,
    master: Arc<MasterKey>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    ring: RwLock<Arc<LoadedRing>>,
    /// Every client, by id: changed in place, entry by entry, as the change feed says.
    clients: RwLock<HashMap<String, Arc<ClientRow>>>,
    /// The number of the last change of the store's feed applied here (see [`refresh`]).
    seen: AtomicI64,
    /// When the feed was last read through (a replica cut off for longer than the feed is kept
    /// reloads whole).
    caught_up: Mutex<Instant>,
    /// Wakes the refresh task before its next tick (a PostgreSQL notification).
    wake: tokio::sync::Notify,
    ca: RwLock<Arc<LoadedCa>>,
    metrics: Metrics,
    /// One refresh at a time, so a slower one cannot put back what a newer one replaced (a revoked
    /// key, a deleted client), and the feed is applied in order.
    refreshing: tokio::sync::Mutex<()>,
    /// Client ids the store did not know, until when (see [`AppState::lookup_client`]).
    unknown_clients: Mutex<HashMap<String, std::time::Instant>>,
    /// Store look-ups of clients the cache does not know, at most this many at once.
    client_lookups: tokio::sync::Semaphore,
    /// Password hashing, bounded.
    hashing: crate::signin::Hashing,
    /// `[[trusted_issuer]]`: whose tokens clients may authenticate with (set once, at start-up).
    trusted: std::sync::OnceLock<Arc<crate::assertion::issuers::TrustedIssuers>>,
    /// `[[identity_provider]]`: where people may sign in upstream (set once, at start-up).
    upstream: std::sync::OnceLock<Arc<crate::signin::upstream_provider::UpstreamProviders>>,
    /// `[vault]`: the Vault-shaped API's settings and remembered tokens (defaults unless set).
    vault: std::sync::OnceLock<Arc<crate::vault_layer::VaultLayer>>,
    /// When this replica last recorded its heartbeat, and the ring fingerprint it recorded.
    last_beat: Mutex<Option<(Instant, String)>>,
    /// The audit trail's recorder (issue 22).
    audit: crate::audit::Auditor,
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
    /// Loads the key ring, the clients (streamed) and the CA. Fails closed: no key ring, no server.
    /// The audit trail is kept with its defaults (the store, fail-closed).
    pub async fn load(
        store: Store,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Result<Self, ServiceError> {
        Self::load_with_audit(store, master, clock, settings, Default::default()).await
    }

    /// [`AppState::load`] with the audit trail kept as `audit` says.
    pub async fn load_with_audit(
        store: Store,
        master: Arc<MasterKey>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        audit: crate::audit::AuditSettings,
    ) -> Result<Self, ServiceError> {
        // The feed's head first: what changes while the rest loads is applied again by the first
        // refresh, which is harmless.
        let seen = store.change_head().await?;
        let ring = crate::keys::load_key_ring(&store, &master, clock.now(), None).await?;
        ring.signing_key(clock.now())?;
        let clients = load_clients(&store).await?;
        let ca = pki::load_ca(&store, &master, settings.crl_url.as_deref()).await?;
        let jwks_cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", settings.jwks_max_age_secs))
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let audit =
            crate::audit::Auditor::start(store.clone(), &settings.replica_id, audit).await?;
        let state = Self(Arc::new(Inner {
            audit,
            jwks_cache_control,
            certs: CertBatcher::spawn(store.clone()),
            refreshes: RefreshBatcher::spawn(store.clone()),
            store,
            master,
            clock,
            ring: RwLock::new(Arc::new(loaded(ring)?)),
            clients: RwLock::new(clients),
            seen: AtomicI64::new(seen),
            caught_up: Mutex::new(Instant::now()),
            wake: tokio::sync::Notify::new(),
            ca: RwLock::new(Arc::new(ca)),
            metrics: Metrics::default(),
            refreshing: tokio::sync::Mutex::new(()),
            unknown_clients: Mutex::new(HashMap::new()),
            client_lookups: tokio::sync::Semaphore::new(CLIENT_LOOKUPS),
            hashing: crate::signin::Hashing::new(&settings.signin),
            settings,
            trusted: std::sync::OnceLock::new(),
            upstream: std::sync::OnceLock::new(),
            vault: std::sync::OnceLock::new(),
            last_beat: Mutex::new(None),
        }));
        let weak = Arc::downgrade(&state.0);
        state.0.audit.set_signer(Box::new(move |claims| {
            let st = AppState(weak.upgrade()?);
            let ring = st.ring();
            let key = ring.ring.signing_key(st.now()).ok()?;
            crate::audit::checkpoint::sign(&key.key, claims)
        }));
        Ok(state)
    }

    /// The audit trail's recorder.
    pub fn audit(&self) -> &crate::audit::Auditor {
        &self.0.audit
    }

    /// The issuing CA in force.
    pub(crate) fn ca(&self) -> Arc<LoadedCa> {
        match self.0.ca.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// This server's clock.
    pub(crate) fn clock(&self) -> &dyn Clock {
        self.0.clock.as_ref()
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

    /// The key ring in force.
    pub(crate) fn ring(&self) -> Arc<LoadedRing> {
        match self.0.ring.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn cached_client(&self, id: &str) -> Option<Arc<ClientRow>> {
        match self.0.clients.read() {
            Ok(r) => r.get(id).cloned(),
            Err(p) => p.into_inner().get(id).cloned(),
        }
    }

    /// Puts a client read from the store into the cache, unless a refresh applied changes since
    /// `seen_before` (the number of the feed before the read): the row may then be older than what
    /// the refresh put there (a delete), and the feed, not this read, has the last word.
    fn cache_client_read_at(&self, row: Arc<ClientRow>, seen_before: i64) {
        let mut map = match self.0.clients.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        if self.0.seen.load(Ordering::Acquire) == seen_before {
            map.insert(row.client_id.clone(), row);
        }
    }

    /// A client by id: from memory, or from the store when the cache does not know it yet (created on
    /// another replica since the last refresh).
    ///
    /// A store that cannot answer is an error, not "no such client": a client created just before an
    /// outage must be told to retry, not that its credentials are wrong.
    pub(crate) async fn client(&self, id: &str) -> Result<Option<Arc<ClientRow>>, ServiceError> {
        match self.cached_client(id) {
            Some(c) => Ok(Some(c)),
            None => self.lookup_client(id).await,
        }
    }

    /// Asks the store for a client the cache does not know. Anyone can send any `client_id` to the
    /// token endpoint, so an id the store did not know is answered from memory for
    /// [`UNKNOWN_CLIENT_FOR`], and at most [`CLIENT_LOOKUPS`] look-ups run at once: a flood of made-up
    /// ids waits its turn instead of taking every connection of the pool.
    async fn lookup_client(&self, id: &str) -> Result<Option<Arc<ClientRow>>, ServiceError> {
        if id.is_empty() || id.len() > 128 {
            return Ok(None);
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
            return Ok(None);
        }
        let Ok(_turn) = self.0.client_lookups.acquire().await else {
            return Ok(None);
        };
        // Another look-up may have answered while this one waited.
        if let Some(c) = self.cached_client(id) {
            return Ok(Some(c));
        }
        if self
            .0
            .unknown_clients
            .lock()
            .is_ok_and(|m| known_unknown(&m))
        {
            return Ok(None);
        }
        let seen_before = self.0.seen.load(Ordering::Acquire);
        let row = match self.0.store.client(id).await {
            Ok(Some(row)) => Arc::new(row),
            Ok(None) => {
                if let Ok(mut m) = self.0.unknown_clients.lock() {
                    if m.len() >= UNKNOWN_CLIENTS {
                        m.clear();
                    }
                    m.insert(id.to_owned(), now + UNKNOWN_CLIENT_FOR);
                }
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        self.cache_client_read_at(row.clone(), seen_before);
        Ok(Some(row))
    }

    /// Sets the trusted issuers of client assertions (once; a second call is refused).
    pub fn set_trusted_issuers(
        &self,
        t: Arc<crate::assertion::issuers::TrustedIssuers>,
    ) -> Result<(), ServiceError> {
        self.0
            .trusted
            .set(t)
            .map_err(|_| ServiceError::Invalid("the trusted issuers are set already".into()))
    }

    /// Sets the Vault-shaped API's settings (once, before the router is built).
    pub fn set_vault(&self, s: crate::config::vault::VaultSettings) -> Result<(), ServiceError> {
        self.0
            .vault
            .set(Arc::new(crate::vault_layer::VaultLayer::new(s)))
            .map_err(|_| ServiceError::Invalid("the vault settings are set already".into()))
    }

    /// The Vault-shaped API's settings and remembered tokens.
    pub(crate) fn vault(&self) -> &crate::vault_layer::VaultLayer {
        self.0
            .vault
            .get_or_init(|| Arc::new(crate::vault_layer::VaultLayer::new(Default::default())))
    }

    /// The trusted issuers of client assertions, when any are configured.
    pub(crate) fn trusted_issuers(&self) -> Option<&crate::assertion::issuers::TrustedIssuers> {
        self.0.trusted.get().map(|t| &**t)
    }

    /// Sets the upstream identity providers (once; a second call is refused).
    pub fn set_upstream_providers(
        &self,
        p: Arc<crate::signin::upstream_provider::UpstreamProviders>,
    ) -> Result<(), ServiceError> {
        self.0
            .upstream
            .set(p)
            .map_err(|_| ServiceError::Invalid("the identity providers are set already".into()))
    }

    /// The upstream identity providers, when any are configured.
    pub(crate) fn upstream_providers(
        &self,
    ) -> Option<&crate::signin::upstream_provider::UpstreamProviders> {
        self.0.upstream.get().map(|p| &**p)
    }

    /// The scopes a `[[trusted_issuer]]` entry gives `client_id`, when one maps to it.
    pub(crate) fn mapped_client_scopes(&self, client_id: &str) -> Option<String> {
        self.trusted_issuers()?.scopes_of(client_id)
    }

    /// The client of an authorized token (it existed a moment ago, when the token was checked).
    pub(crate) async fn caller(
        &self,
        claims: &AccessClaims,
    ) -> Result<Arc<ClientRow>, ServiceError> {
        self.client(&claims.client_id)
            .await?
            .ok_or_else(|| ServiceError::Forbidden("the token's client no longer exists".into()))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The master key.
    pub(crate) fn master(&self) -> &MasterKey {
        &self.0.master
    }

    /// The settings the server was started with.
    pub(crate) fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// Password hashing (bounded).
    pub(crate) fn hashing(&self) -> &crate::signin::Hashing {
        &self.0.hashing
    }

    /// The counters behind `/metrics`.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Where issued certificates are recorded (in batches).
    pub(crate) fn certs(&self) -> &CertBatcher {
        &self.0.certs
    }

    /// Where refresh tokens are rotated (in batches).
    pub(crate) fn refreshes(&self) -> &RefreshBatcher {
        &self.0.refreshes
    }

    /// `Cache-Control` of the JWKS.
    pub(crate) fn jwks_cache_control(&self) -> &HeaderValue {
        &self.0.jwks_cache_control
    }

    /// The JWKS document served now.
    pub fn jwks_bytes(&self) -> Bytes {
        self.ring().jwks.clone()
    }

    /// The current JWKS fingerprint.
    pub fn fingerprint(&self) -> String {
        self.ring().ring.fingerprint().to_owned()
    }
}

async fn load_clients(store: &Store) -> Result<HashMap<String, Arc<ClientRow>>, ServiceError> {
    let mut map = HashMap::new();
    store
        .each_client(|c| {
            map.insert(c.client_id.clone(), Arc::new(c));
        })
        .await?;
    map.shrink_to_fit();
    Ok(map)
}
