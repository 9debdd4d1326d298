//! The [`Verifier`]: header checks, the key cache, signature and claim checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header};
use tokio::sync::watch;
// Monotonic, and paused/advanced by tokio's test clock: cache freshness and the cool-down must not
// move when someone steps the wall clock.
use tokio::time::Instant;

use crate::claims::{Claims, RawClaims};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, shorten};
use crate::fetch::{Fetched, JwksFetcher};
use crate::jwks::{self, CachedKey, KeySet};

mod builder;
pub use builder::VerifierBuilder;

/// Default leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default lower bound of the key cache time (a smaller `max-age` is raised to it).
pub const DEFAULT_MIN_CACHE: Duration = Duration::from_secs(60);
/// Default upper bound of the key cache time (a larger `max-age` is lowered to it).
pub const DEFAULT_MAX_CACHE: Duration = Duration::from_secs(24 * 60 * 60);
/// Default cache time when the JWKS response has no `Cache-Control: max-age`.
pub const DEFAULT_CACHE: Duration = Duration::from_secs(5 * 60);
/// Default cool-down between a fetch and a refetch caused by an unknown `kid`.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
/// Default maximum token size in bytes.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;
/// Default timeout of one JWKS fetch.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifies Castellan access tokens against a JWKS it fetches and caches.
///
/// Cheap to clone (one `Arc`); every clone shares the key cache. The background refresh task stops
/// when the last clone is dropped, or at [`stop_background_refresh`](Verifier::stop_background_refresh).
///
/// ```no_run
/// # async fn demo() -> Result<(), castellan_verify::Error> {
/// use castellan_verify::Verifier;
///
/// let verifier = Verifier::builder(
///     "https://auth.internal",
///     "billing-api",
///     "https://auth.internal/.well-known/jwks.json",
/// )
/// .build()?;
/// # let token = "";
/// let claims = verifier.verify(token).await?;
/// if !claims.has_scope("invoices:read") { /* 403 */ }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.cfg.issuer)
            .field("audiences", &self.inner.cfg.audiences)
            .field("jwks_url", &self.inner.cfg.jwks_url)
            .field("cached_kids", &self.cached_kids().len())
            .finish_non_exhaustive()
    }
}

struct Config {
    issuer: String,
    audiences: Vec<String>,
    jwks_url: String,
    leeway: i64,
    min_cache: Duration,
    max_cache: Duration,
    default_cache: Duration,
    cooldown: Duration,
    max_token_size: usize,
    fetch_timeout: Duration,
    accepted_types: Vec<String>,
    allow_missing_typ: bool,
}

struct Inner {
    cfg: Config,
    fetcher: Arc<dyn JwksFetcher>,
    clock: Arc<dyn Clock>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Completed fetch attempts (good or bad). A caller that saw `n` and finds `n + 1` knows a fetch
    /// finished in between and looks again instead of fetching.
    attempts: AtomicU64,
    gate: Mutex<Gate>,
    handle: tokio::runtime::Handle,
    refresher: Mutex<Option<tokio::task::AbortHandle>>,
}

#[derive(Default)]
struct Gate {
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// The fetch under way, if any: its sender is dropped when it ends.
    inflight: Option<watch::Receiver<()>>,
    last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The cache time ran out (background task, or a verification that used a stale key).
    Scheduled,
    /// A verification needs a key the cache lacks (unknown kid, or no keys yet).
    Needed,
    /// [`Verifier::refresh`].
    Forced,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .refresher
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Verifier {
    /// Starts a builder for tokens from `issuer` (compared exactly with `iss`) meant for `audience`
    /// (one of the token's `aud` values must equal it), with keys from `jwks_url`.
    pub fn builder(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            jwks_url: jwks_url.into(),
            leeway: DEFAULT_LEEWAY,
            min_cache: DEFAULT_MIN_CACHE,
            max_cache: DEFAULT_MAX_CACHE,
            default_cache: DEFAULT_CACHE,
            cooldown: DEFAULT_COOLDOWN,
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            // RFC 9068 §4: a resource server MUST refuse any other `typ`. `typ_matches` also takes
            // `application/at+jwt`.
            accepted_types: vec!["at+jwt".to_owned()],
            allow_missing_typ: false,
            clock: None,
            fetcher: None,
            background_refresh: true,
            allow_http: false,
            ca_pem: None,
        }
    }

    /// Verifies a compact JWS access token and returns its claims.
    ///
    /// Waits for a JWKS fetch only when the token's `kid` is not cached (and a fetch is allowed: no
    /// keys yet, the cache is stale, or the last fetch is older than the cool-down); concurrent callers
    /// share that one fetch. A stale cache that knows the `kid` answers at once and refreshes in the
    /// background.
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        let inner = &self.inner;
        let max = inner.cfg.max_token_size;
        if token.len() > max {
            return Err(Error::TokenTooLarge {
                len: token.len(),
                max,
            });
        }
        let header = read_header(token)?;
        let (alg, kid) = inner.check_header(&header)?;
        let key = inner.key_for(kid).await?;
        if key.alg != alg {
            return Err(Error::AlgNotAllowed {
                alg: format!("{alg:?}"),
            });
        }
        // The header was read once above; the signature is checked over the signing input (the
        // compact serialization up to its last '.', RFC 7515 §7.1) before any claim is looked at.
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or(Error::Malformed("not three dot-separated segments"))?;
        let signature = B64
            .decode(signature)
            .map_err(|_| Error::Malformed("the signature is not base64url"))?;
        key.key
            .verify_sig(message.as_bytes(), &signature)
            .map_err(|_| Error::BadSignature)?;
        let raw: RawClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(from_jwt_error)?;
        let claims = raw.into_claims().map_err(Error::MissingClaim)?;
        inner.check_claims(&claims)?;
        let now = inner.clock.now();
        let leeway = inner.cfg.leeway;
        if now.saturating_sub(leeway) >= claims.exp {
            return Err(Error::Expired {
                exp: claims.exp,
                now,
            });
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(Error::NotYetValid { nbf, now });
        }
        Ok(claims)
    }

    /// Fetches the JWKS now (or joins the fetch under way), whatever the cache time and cool-down say.
    /// On failure the cached keys stay, and the error says why the fetch failed.
    pub async fn refresh(&self) -> Result<(), Error> {
        let seen = self.inner.attempts.load(Ordering::Acquire);
        self.inner.refresh(Reason::Forced, seen).await;
        let gate = self
            .inner
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &gate.last_error {
            None => Ok(()),
            Some(e) => Err(Error::JwksUnavailable(e.clone())),
        }
    }

    /// The kids of the cached keys, sorted.
    pub fn cached_kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self
            .inner
            .snapshot()
            .map(|s| s.keys.keys().cloned().collect())
            .unwrap_or_default();
        kids.sort();
        kids
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.cfg.issuer
    }

    /// Stops the background refresh task (dropping the last clone of the verifier does the same).
    /// Verification keeps working; keys are then fetched only when a token needs one.
    pub fn stop_background_refresh(&self) {
        if let Some(task) = self
            .inner
            .refresher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// The typed header, from jsonwebtoken. When it fails to parse, a second look at the raw JSON tells
/// `alg: "none"` (or another algorithm jsonwebtoken does not know) and a malformed `crit` apart from
/// plain garbage.
fn read_header(token: &str) -> Result<Header, Error> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| classify_bad_header(token))?;
    // jsonwebtoken reads `"crit": null` (or a key spelled with escapes) as no `crit`: RFC 7515 §4.1.11
    // leaves no room for an ignored `crit`, so the raw header decides.
    if header.crit.is_none() && raw_header_has_crit(token) {
        return Err(Error::CritUnsupported);
    }
    Ok(header)
}

fn raw_header_has_crit(token: &str) -> bool {
    let first = token.split('.').next().unwrap_or_default();
    let Ok(bytes) = B64.decode(first) else {
        return false;
    };
    // Parsed only when it could name `crit` (literally, or through an escape).
    let could = bytes.windows(4).any(|w| w == b"crit") || bytes.contains(&b'\\');
    could
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
            .is_ok_and(|h| h.contains_key("crit"))
}

fn classify_bad_header(token: &str) -> Error {
    if token.split('.').count() != 3 {
        return Error::Malformed("not three dot-separated segments");
    }
    let first = token.split('.').next().unwrap_or_default();
    let Ok(bytes) = B64.decode(first) else {
        return Error::Malformed("header is not base64url");
    };
    let Ok(serde_json::Value::Object(header)) = serde_json::from_slice(&bytes) else {
        return Error::Malformed("header is not a JSON object");
    };
    if header.contains_key("crit") {
        return Error::CritUnsupported;
    }
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) if alg.parse::<Algorithm>().is_err() => {
            Error::AlgNotAllowed { alg: shorten(alg) }
        }
        Some(serde_json::Value::String(_)) => {
            Error::Malformed("header has a member of the wrong type")
        }
        _ => Error::Malformed("header has no alg string"),
    }
}

fn from_jwt_error(e: jsonwebtoken::errors::Error) -> Error {
    match e.kind() {
        ErrorKind::InvalidSignature => Error::BadSignature,
        ErrorKind::InvalidIssuer => Error::WrongIssuer,
        ErrorKind::InvalidAudience => Error::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => Error::MissingClaim(match claim.as_str() {
            "iss" => "iss",
            "sub" => "sub",
            "aud" => "aud",
            _ => "exp",
        }),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => Error::AlgNotAllowed {
            alg: "(refused by jsonwebtoken)".to_owned(),
        },
        // A key from the JWKS that the crypto library refuses cannot verify anything.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Error::BadSignature,
        ErrorKind::Base64(_) => Error::Malformed("a segment is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidClaimFormat(_) => {
            Error::Malformed("claims are not the expected JSON")
        }
        _ => Error::Malformed("token"),
    }
}

/// `typ` is a media type: compared case-insensitively, with an optional `application/` prefix
/// (RFC 7515 §4.1.9).
fn typ_matches(accepted: &str, typ: &str) -> bool {
    let short = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    short.eq_ignore_ascii_case(accepted)
}

impl Inner {
    fn check_header<'h>(&self, header: &'h Header) -> Result<(Algorithm, &'h str), Error> {
        if header.crit.is_some() {
            return Err(Error::CritUnsupported);
        }
        if !jwks::supported(header.alg) {
            return Err(Error::AlgNotAllowed {
                alg: format!("{:?}", header.alg),
            });
        }
        // jku, x5u, jwk and x5c are deliberately never read: keys come from the configured JWKS only.
        match header.typ.as_deref() {
            None if self.cfg.allow_missing_typ => {}
            Some(typ) if self.cfg.accepted_types.iter().any(|a| typ_matches(a, typ)) => {}
            other => {
                return Err(Error::WrongType {
                    typ: other.map(shorten),
                });
            }
        }
        let kid = header.kid.as_deref().ok_or(Error::MissingKid)?;
        Ok((header.alg, kid))
    }

    /// What jsonwebtoken's `validate` checked before: `exp` a non-negative NumericDate, `iss` equal
    /// to the configured issuer, one of the `aud` values one of the configured audiences.
    fn check_claims(&self, claims: &Claims) -> Result<(), Error> {
        if claims.exp < 0 {
            return Err(Error::MissingClaim("exp"));
        }
        if claims.iss != self.cfg.issuer {
            return Err(Error::WrongIssuer);
        }
        if !claims
            .aud
            .iter()
            .any(|a| self.cfg.audiences.iter().any(|c| c == a))
        {
            return Err(Error::WrongAudience);
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key for `kid`: from the cache, or after the one fetch a missing kid may cause.
    async fn key_for(self: &Arc<Self>, kid: &str) -> Result<Arc<CachedKey>, Error> {
        let seen = self.attempts.load(Ordering::Acquire);
        let now = Instant::now();
        let (found, stale) = {
            let guard = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            match guard.as_ref() {
                Some(set) => (set.keys.get(kid).cloned(), now >= set.expires_at),
                None => (None, false),
            }
        };
        if let Some(key) = found {
            if stale {
                // Serve from the stale cache and refresh behind it; the fetch is not awaited.
                drop(self.start_refresh(Reason::Scheduled, seen));
            }
            return Ok(key);
        }
        self.refresh(Reason::Needed, seen).await;
        match self.snapshot() {
            Some(set) => set
                .keys
                .get(kid)
                .cloned()
                .ok_or_else(|| Error::UnknownKid { kid: shorten(kid) }),
            None => {
                let gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
                Err(Error::JwksUnavailable(
                    gate.last_error
                        .clone()
                        .unwrap_or_else(|| "no keys fetched yet".to_owned()),
                ))
            }
        }
    }

    async fn refresh(self: &Arc<Self>, reason: Reason, seen: u64) {
        if let Some(mut done) = self.start_refresh(reason, seen) {
            // The sender is dropped when the fetch ends; nothing is ever sent.
            let _ = done.changed().await;
        }
    }

    /// Starts a fetch if `reason` allows one, or joins the one under way. Single flight: the gate
    /// lock makes the decision and the record of the fetch one step. The fetch runs in its own task,
    /// so a caller that gives up (a dropped request) does not cancel it for the others.
    fn start_refresh(self: &Arc<Self>, reason: Reason, seen: u64) -> Option<watch::Receiver<()>> {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if self.attempts.load(Ordering::Acquire) != seen {
            return None; // a fetch ended since the caller looked: look again instead
        }
        if let Some(rx) = &gate.inflight
            && rx.has_changed().is_ok()
        {
            return Some(rx.clone());
        }
        let now = Instant::now();
        if !self.fetch_due(reason, &gate, now) {
            return None;
        }
        gate.last_attempt = Some(now);
        let (tx, rx) = watch::channel(());
        gate.inflight = Some(rx.clone());
        drop(gate);
        let inner = Arc::clone(self);
        let handle = tokio::runtime::Handle::try_current().unwrap_or_else(|_| self.handle.clone());
        handle.spawn(async move {
            inner.fetch_and_store().await;
            drop(tx);
        });
        Some(rx)
    }

    /// The rate limit. A stale cache may refetch once per expiry; a missing kid at most once per
    /// cool-down; a forced refresh always.
    fn fetch_due(&self, reason: Reason, gate: &Gate, now: Instant) -> bool {
        let cooled = gate
            .last_attempt
            .is_none_or(|t| now >= later(t, self.cfg.cooldown));
        let stale_due = match self.snapshot() {
            None => cooled,
            Some(set) => {
                now >= set.expires_at
                    && (gate.last_attempt.is_none_or(|t| t < set.expires_at) || cooled)
            }
        };
        match reason {
            Reason::Forced => true,
            Reason::Scheduled => stale_due,
            Reason::Needed => cooled || stale_due,
        }
    }

    fn cache_time(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.cfg.default_cache)
            .clamp(self.cfg.min_cache, self.cfg.max_cache)
    }

    async fn fetch_and_store(&self) {
        let current = self.snapshot();
        let etag = current.as_ref().and_then(|s| s.etag.clone());
        let fetched =
            tokio::time::timeout(self.cfg.fetch_timeout, self.fetcher.fetch(etag.as_deref())).await;
        let now = Instant::now();
        let result: Result<KeySet, String> = match fetched {
            Err(_) => Err(format!(
                "fetch timed out after {:?}",
                self.cfg.fetch_timeout
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(Fetched::NotModified { max_age })) => match &current {
                Some(set) => Ok(KeySet {
                    keys: set.keys.clone(),
                    expires_at: later(now, self.cache_time(max_age)),
                    etag: set.etag.clone(),
                }),
                None => Err("304 Not Modified, but no keys are cached".to_owned()),
            },
            Ok(Ok(Fetched::Keys {
                body,
                max_age,
                etag,
            })) => jwks::parse(&body).map(|keys| KeySet {
                keys,
                expires_at: later(now, self.cache_time(max_age)),
                etag,
            }),
        };
        let error = match result {
            Ok(set) => {
                tracing::debug!(
                    url = %self.cfg.jwks_url,
                    keys = set.keys.len(),
                    "JWKS fetched"
                );
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
                None
            }
            Err(e) => {
                tracing::warn!(
                    url = %self.cfg.jwks_url,
                    "JWKS fetch failed, keeping the cached keys: {e}"
                );
                Some(e)
            }
        };
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        gate.last_error = error;
        gate.inflight = None;
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    /// How long the background task sleeps: until the cache goes stale, or until the cool-down after
    /// a failed fetch has passed; at least a second.
    fn next_delay(&self) -> Duration {
        let now = Instant::now();
        let gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let retry_at = gate
            .last_attempt
            .map_or(now, |t| later(t, self.cfg.cooldown));
        drop(gate);
        let at = match self.snapshot() {
            Some(set) if now < set.expires_at => set.expires_at,
            _ => retry_at,
        };
        let second = Duration::from_secs(1);
        at.saturating_duration_since(now)
            .clamp(second, self.cfg.max_cache.max(second))
    }
}

/// `t + d`, saturating: a configured duration of `Duration::MAX` means "practically never", not a
/// panic. Thirty years is what tokio itself uses for a far-future deadline.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(30 * 365 * 24 * 60 * 60))
}

async fn background_refresh(weak: Weak<Inner>) {
    loop {
        let delay = {
            let Some(inner) = weak.upgrade() else { return };
            let seen = inner.attempts.load(Ordering::Acquire);
            inner.refresh(Reason::Scheduled, seen).await;
            inner.next_delay()
        };
        tokio::time::sleep(delay).await;
    }
}

fn secs(d: Duration) -> i64 {
    // Whole seconds (the unit of `exp`/`nbf`), rounded up: a 500 ms leeway must not become none.
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Verifier>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_comparison() {
        assert!(typ_matches("at+jwt", "at+jwt"));
        assert!(typ_matches("at+jwt", "AT+JWT"));
        assert!(typ_matches("at+jwt", "application/at+jwt"));
        assert!(typ_matches("JWT", "jwt"));
        assert!(!typ_matches("at+jwt", "jwt"));
        assert!(!typ_matches("at+jwt", "application/"));
        // A multi-byte character at the prefix boundary must not panic.
        assert!(!typ_matches("at+jwt", "applicationé+jwt"));
    }

    #[test]
    fn durations_round_up_to_seconds() {
        assert_eq!(secs(Duration::from_millis(500)), 1);
        assert_eq!(secs(Duration::from_secs(30)), 30);
        assert_eq!(secs(Duration::ZERO), 0);
    }

    #[test]
    fn bad_headers_are_classified() {
        let enc = |s: &str| B64.encode(s);
        let tok = |h: &str| format!("{}.e30.c2ln", enc(h));
        assert_eq!(
            classify_bad_header(&tok(r#"{"alg":"none"}"#)),
            Error::AlgNotAllowed { alg: "none".into() }
        );
        assert_eq!(
            classify_bad_header(&tok(r#"{"alg":"RS256","crit":"b64"}"#)),
            Error::CritUnsupported
        );
        assert!(matches!(classify_bad_header("a.b"), Error::Malformed(_)));
        assert!(matches!(
            classify_bad_header(&tok("[1]")),
            Error::Malformed(_)
        ));
        assert!(matches!(
            classify_bad_header("!!!.e30.c2ln"),
            Error::Malformed(_)
        ));
    }
}
