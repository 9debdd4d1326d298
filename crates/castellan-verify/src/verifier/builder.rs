//! [`VerifierBuilder`]: every setting of a [`Verifier`], with safe defaults, checked once at `build`.

use super::*;

/// Configures a [`Verifier`]. Every setting has a safe default; see the setters.
#[must_use]
pub struct VerifierBuilder {
    pub(super) issuer: String,
    pub(super) audiences: Vec<String>,
    pub(super) jwks_url: String,
    pub(super) leeway: Duration,
    pub(super) min_cache: Duration,
    pub(super) max_cache: Duration,
    pub(super) default_cache: Duration,
    pub(super) cooldown: Duration,
    pub(super) max_token_size: usize,
    pub(super) fetch_timeout: Duration,
    pub(super) accepted_types: Vec<String>,
    pub(super) allow_missing_typ: bool,
    pub(super) clock: Option<Arc<dyn Clock>>,
    pub(super) fetcher: Option<Arc<dyn JwksFetcher>>,
    pub(super) background_refresh: bool,
    pub(super) allow_http: bool,
    pub(super) ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Accepts one more audience (a token passes when any of its `aud` values is accepted).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock skew allowed on `exp` and `nbf`. Default 60 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Bounds for the key cache time taken from the JWKS response's `Cache-Control: max-age`.
    /// Default 60 s to 24 h.
    pub fn cache_time_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_cache = min;
        self.max_cache = max;
        self
    }

    /// Cache time when the response has no `max-age` (then clamped to the bounds). Default 5 min.
    pub fn default_cache_time(mut self, time: Duration) -> Self {
        self.default_cache = time;
        self
    }

    /// After any fetch, an unknown `kid` causes no new fetch until this has passed, so tokens with
    /// made-up kids cannot make the verifier hammer the JWKS endpoint. Default 30 s.
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Tokens longer than this many bytes are refused before any parsing. Default 8 KiB.
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// Time limit of one JWKS fetch (connect, headers and body). Default 10 s.
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The accepted header `typ` values (case-insensitive; `application/` prefix optional). Default
    /// `at+jwt` only: what Castellan issues, and all RFC 9068 §4 lets a resource server accept.
    ///
    /// To also accept tokens typed `JWT` (from an issuer that does not follow RFC 9068, at the cost
    /// of its protection against other JWTs being replayed as access tokens):
    /// `.accepted_types(["at+jwt", "JWT"])`.
    pub fn accepted_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.accepted_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Accept tokens without a `typ` header. Default `false`: Castellan always sets `typ: at+jwt`.
    pub fn allow_missing_typ(mut self, allow: bool) -> Self {
        self.allow_missing_typ = allow;
        self
    }

    /// The clock for `exp` and `nbf`. Default: the system clock. Cache times and the cool-down do
    /// not use it: they run on tokio's monotonic clock, so stepping the wall clock cannot keep stale
    /// keys or hold off a refetch (in tests, pause and advance tokio's time for them).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Fetch the JWKS with this instead of HTTP (the JWKS URL is then only used in logs).
    pub fn fetcher(mut self, fetcher: Arc<dyn JwksFetcher>) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// Keep a background task that fetches the JWKS at once and again whenever the cache time runs
    /// out. Default `true`. Without it keys are fetched when a token needs them.
    pub fn background_refresh(mut self, on: bool) -> Self {
        self.background_refresh = on;
        self
    }

    /// Allow a plain `http://` JWKS URL to a host that is not loopback. Default `false`: anyone on the
    /// path could then hand this verifier their own keys.
    pub fn insecure_allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Trust only these CA certificates (PEM) for an `https://` JWKS URL, instead of the system's
    /// roots: for a Castellan serving HTTPS with a certificate from its own CA, its `root.pem`.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Checks the settings and starts the verifier (and its background task). Must be called inside
    /// a Tokio runtime. Does not wait for the first fetch: see [`Verifier::refresh`] for that.
    pub fn build(self) -> Result<Verifier, Error> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.issuer.is_empty() {
            return bad("the issuer is empty");
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return bad("an audience is empty");
        }
        if self.min_cache > self.max_cache {
            return bad("the minimum cache time is above the maximum");
        }
        if self.accepted_types.is_empty() && !self.allow_missing_typ {
            return bad("no token type is accepted");
        }
        if self.max_token_size == 0 {
            return bad("the maximum token size is 0");
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("build() must be called inside a Tokio runtime".into()))?;
        let fetcher = match self.fetcher {
            Some(fetcher) => fetcher,
            None => default_fetcher(
                &self.jwks_url,
                self.allow_http,
                self.fetch_timeout,
                self.ca_pem.as_deref(),
            )?,
        };
        let cfg = Config {
            issuer: self.issuer,
            audiences: self.audiences,
            jwks_url: self.jwks_url,
            leeway: secs(self.leeway),
            min_cache: self.min_cache,
            max_cache: self.max_cache,
            default_cache: self.default_cache,
            cooldown: self.cooldown,
            max_token_size: self.max_token_size,
            fetch_timeout: self.fetch_timeout,
            accepted_types: self.accepted_types,
            allow_missing_typ: self.allow_missing_typ,
        };
        let inner = Arc::new(Inner {
            cfg,
            fetcher,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            keys: RwLock::new(None),
            attempts: AtomicU64::new(0),
            gate: Mutex::new(Gate::default()),
            handle: handle.clone(),
            refresher: Mutex::new(None),
        });
        if self.background_refresh {
            let task = handle.spawn(background_refresh(Arc::downgrade(&inner)));
            *inner
                .refresher
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
        }
        Ok(Verifier { inner })
    }
}

#[cfg(feature = "http")]
fn default_fetcher(
    url: &str,
    allow_http: bool,
    timeout: Duration,
    ca_pem: Option<&[u8]>,
) -> Result<Arc<dyn JwksFetcher>, Error> {
    // The URL rules (https, or http to loopback unless allowed) and the proxy rule live in
    // `HttpFetcher`, so a fetcher built directly obeys them too.
    Ok(Arc::new(crate::fetch::HttpFetcher::build(
        url, timeout, ca_pem, allow_http,
    )?))
}

#[cfg(not(feature = "http"))]
fn default_fetcher(
    _url: &str,
    _allow_http: bool,
    _timeout: Duration,
    _ca_pem: Option<&[u8]>,
) -> Result<Arc<dyn JwksFetcher>, Error> {
    Err(Error::Config(
        "built without the `http` feature: pass a fetcher with VerifierBuilder::fetcher".into(),
    ))
}
