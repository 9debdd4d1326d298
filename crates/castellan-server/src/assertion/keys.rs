//! A trusted issuer's public keys: fetched (a file, a JWKS URL, or OIDC discovery), cached, fetched
//! again when they are older than [`KEYS_MAX_AGE`] or a token names a kid they lack, but never more
//! often than once per [`REFETCH_COOLDOWN`] (a flood of made-up kids cannot turn into a flood of
//! requests to the issuer). Bounded: at most [`MAX_JWKS_BYTES`] per document and [`MAX_KEYS`] keys.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::TrustedIssuerConfig;

/// The longest JWKS or discovery document read.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The most keys kept from one JWKS.
pub const MAX_KEYS: usize = 32;
/// The shortest time between two fetches of one issuer's keys.
pub const REFETCH_COOLDOWN: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again before use (the old ones serve if that fails).
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(600);

/// Where the keys come from.
#[derive(Debug)]
enum Source {
    Discovery,
    Url(String),
    File(PathBuf),
}

/// One public key of the issuer.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    /// The JWK's `alg`, when it names one.
    pub(crate) alg: Option<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<Key>>,
    fetched: Option<Instant>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        let fits = |k: &Key| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && fits(k))
                .cloned(),
            // No kid: only when exactly one key could have signed.
            None => {
                let mut it = self.keys.iter().filter(|k| fits(k));
                match (it.next(), it.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    fn stale(&self) -> bool {
        self.fetched.is_none_or(|t| t.elapsed() > KEYS_MAX_AGE)
    }
}

/// The cached keys of one issuer.
pub(crate) struct IssuerKeys {
    issuer: String,
    source: Source,
    http: Option<reqwest::Client>,
    bearer_token_file: Option<PathBuf>,
    keys: RwLock<Arc<KeySet>>,
    /// When the keys were last fetched (or tried); one fetch at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl IssuerKeys {
    pub(crate) fn new(cfg: &TrustedIssuerConfig) -> Result<Self, String> {
        let source = match (&cfg.jwks_file, &cfg.jwks_url, cfg.discovery) {
            (Some(f), _, _) => Source::File(f.clone()),
            (None, Some(u), _) => Source::Url(u.clone()),
            _ => Source::Discovery,
        };
        let http = match source {
            Source::File(_) => None,
            _ => {
                let mut b = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .connect_timeout(Duration::from_secs(3))
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(ca) = &cfg.ca_file {
                    b = castellan_wire::client::trust_only(b, ca)
                        .map_err(|e| format!("ca_file {e}"))?;
                }
                Some(b.build().map_err(|e| e.to_string())?)
            }
        };
        Ok(Self {
            issuer: cfg.issuer.clone(),
            source,
            http,
            bearer_token_file: cfg.bearer_token_file.clone(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether any key is known (a fetch has succeeded once).
    pub(crate) fn any(&self) -> bool {
        !self.current().keys.is_empty()
    }

    /// The key that verifies a token with this `kid` and `alg`, fetching the keys again when it is not
    /// known (or the keys are old) and the cool-down allows.
    pub(crate) async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        let set = self.current();
        if let Some(k) = set.find(kid, alg)
            && !set.stale()
        {
            return Some(k);
        }
        let mut last = self.last_fetch.lock().await;
        let set = self.current();
        let found = set.find(kid, alg);
        if found.is_some() && !set.stale() {
            return found;
        }
        if last.is_some_and(|t| t.elapsed() < REFETCH_COOLDOWN) {
            return found;
        }
        *last = Some(Instant::now());
        self.refresh_locked().await;
        self.current().find(kid, alg).or(found)
    }

    /// Fetches the keys now (start-up), whatever the cool-down.
    pub(crate) async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.refresh_locked().await;
    }

    async fn refresh_locked(&self) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "trusted issuer: keys loaded");
                let set = Arc::new(KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                });
                match self.keys.write() {
                    Ok(mut w) => *w = set,
                    Err(p) => *p.into_inner() = set,
                }
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, source = ?self.source, error = %e, "trusted issuer: keys could not be fetched");
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Arc<Key>>, String> {
        let doc = match &self.source {
            Source::File(p) => read_file(p).await?,
            Source::Url(u) => self.get(u).await?,
            Source::Discovery => {
                #[derive(serde::Deserialize)]
                struct Discovery {
                    issuer: String,
                    jwks_uri: String,
                }
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let d: Discovery = serde_json::from_slice(&self.get(&url).await?)
                    .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
                if d.issuer != self.issuer {
                    return Err(format!(
                        "{url} names the issuer `{}`, not `{}`",
                        d.issuer, self.issuer
                    ));
                }
                self.get(&d.jwks_uri).await?
            }
        };
        parse_jwks(&doc)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let Some(http) = &self.http else {
            return Err("no HTTP client".into());
        };
        let mut req = http.get(url);
        if let Some(f) = &self.bearer_token_file {
            let t = tokio::fs::read_to_string(f)
                .await
                .map_err(|e| format!("bearer_token_file {}: {e}", f.display()))?;
            req = req.bearer_auth(t.trim());
        }
        let mut resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("{url}: over {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("{url}: over {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

async fn read_file(p: &std::path::Path) -> Result<Vec<u8>, String> {
    let meta = tokio::fs::metadata(p)
        .await
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!("{}: over {MAX_JWKS_BYTES} bytes", p.display()));
    }
    tokio::fs::read(p)
        .await
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// The public keys of a JWKS; symmetric (`oct`) keys and keys of unknown types are left out.
fn parse_jwks(doc: &[u8]) -> Result<Vec<Arc<Key>>, String> {
    let set: JwkSet = serde_json::from_slice(doc).map_err(|e| format!("not a JWKS: {e}"))?;
    if set.keys.len() > MAX_KEYS {
        return Err(format!("the JWKS has over {MAX_KEYS} keys"));
    }
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(
            jwk.algorithm,
            AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
        ) {
            continue;
        }
        let alg = jwk
            .common
            .key_algorithm
            .as_ref()
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            continue;
        }
        keys.push(Arc::new(Key {
            kid: jwk.common.key_id.clone(),
            key,
            alg,
        }));
    }
    if keys.is_empty() {
        return Err("the JWKS holds no usable public key".into());
    }
    Ok(keys)
}
