//! Configuration: defaults, then a TOML file, then `CASTELLAN_*` environment variables; command-line
//! flags are applied on top by the binary. `castellan.example.toml` documents every setting.
//!
//! The environment comes in as a map, so tests never mutate the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use castellan_core::duration::{MAX_DURATION, parse_duration};
pub use signin::SigninConfig;

mod signin;
use serde::{Deserialize, Deserializer};

pub mod identity_provider;
pub use identity_provider::IdentityProviderConfig;
pub mod audit;
pub mod trusted_issuer;
pub use trusted_issuer::TrustedIssuerConfig;
pub mod tls;
pub use tls::{TlsConfig, TlsMode, TlsSource};
pub mod vault;
pub use vault::VaultConfig;

/// A configuration problem, naming the field (and, from a file, its line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The TOML is malformed or a field is unknown or has a bad value.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's message, which names the field, line and column.
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// Values that parse but do not make sense together.
    #[error("invalid configuration: {field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// The URL clients reach this service at; the token issuer. Replicas of one store must share it.
    pub public_url: Option<String>,
    /// Where the embedded store, a dev master key and the admin credential live.
    pub data_dir: PathBuf,
    /// `postgres://…` to share a store between replicas; unset means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// File holding the base64 master key; default `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `castellan=debug`.
    pub log_level: String,
    /// Name of this replica in `/v1/sys/status`; default `<hostname>-<pid>`.
    pub replica_id: Option<String>,
    /// Token settings.
    pub tokens: TokenConfig,
    /// Store settings.
    pub store: StoreConfig,
    /// PKI settings.
    pub pki: PkiConfig,
    /// Key rotation settings.
    pub keys: KeysConfig,
    /// HTTPS for the API.
    pub tls: TlsConfig,
    /// Limits of the HTTP server.
    pub http: HttpConfig,
    /// How people sign in.
    pub signin: SigninConfig,
    /// Issuers whose tokens workloads sign in with (RFC 7523 client assertions).
    pub trusted_issuer: Vec<TrustedIssuerConfig>,
    /// Upstream OpenID Connect providers people may sign in through.
    pub identity_provider: Vec<IdentityProviderConfig>,
    /// The Vault-shaped API (`[vault]`).
    pub vault: VaultConfig,
    /// The audit trail.
    pub audit: audit::AuditConfig,
}

/// `[http]`: how long clients may take and how many connections may be open at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Time for a request's headers to arrive; an idle kept-alive connection is closed after it too.
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Time for a request with a body, from its headers to its answer; past it the answer is 408.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            header_timeout: limits.header_timeout,
            request_timeout: limits.request_timeout,
            max_connections: limits.max_connections,
        }
    }
}

/// `[keys]`: scheduled rotation of the token signing keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Time between two key activations.
    #[serde(deserialize_with = "duration")]
    pub rotation_period: Duration,
    /// How long a next key is in the JWKS before it signs (at least twice `tokens.jwks_max_age`).
    #[serde(deserialize_with = "duration")]
    pub prepublish: Duration,
    /// How long a key stays in the JWKS after it stops signing (at least `tokens.max_ttl` + 60 s leeway +
    /// `tokens.jwks_max_age`).
    #[serde(deserialize_with = "duration")]
    pub retire_after: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            rotation_period: Duration::from_secs(30 * 86_400),
            prepublish: Duration::from_secs(86_400),
            retire_after: Duration::from_secs(2 * 86_400),
        }
    }
}

/// Leeway verifiers are assumed to allow on `exp` and `nbf`.
pub const VERIFIER_LEEWAY_SECS: i64 = 60;

/// `[pki]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PkiConfig {
    /// How long a CRL is valid (its nextUpdate); one replica rebuilds it at half of that.
    #[serde(deserialize_with = "duration")]
    pub crl_validity: Duration,
    /// Configured profiles (`[[pki.profiles]]`), besides the built-in `server`, `client` and `peer`.
    pub profiles: Vec<castellan_core::pki::Profile>,
    /// Issue Castellan's own API names (its TLS names, the public URL's host) to callers: off by
    /// default, since such a certificate impersonates the server itself.
    pub issue_castellan_names: bool,
}

impl Default for PkiConfig {
    fn default() -> Self {
        Self {
            crl_validity: Duration::from_secs(24 * 3600),
            profiles: Vec::new(),
            issue_castellan_names: false,
        }
    }
}

/// `[tokens]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Lifetime of a token when the client has none of its own.
    #[serde(deserialize_with = "duration")]
    pub default_ttl: Duration,
    /// The longest lifetime a client may be given.
    #[serde(deserialize_with = "duration")]
    pub max_ttl: Duration,
    /// `Cache-Control: max-age` of the JWKS.
    #[serde(deserialize_with = "duration")]
    pub jwks_max_age: Duration,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How often the key ring and clients are reloaded from the store.
    #[serde(deserialize_with = "duration")]
    pub refresh_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8270)),
            public_url: None,
            data_dir: PathBuf::from("./castellan-data"),
            database_url: None,
            master_key_file: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            replica_id: None,
            tokens: TokenConfig::default(),
            store: StoreConfig::default(),
            pki: PkiConfig::default(),
            keys: KeysConfig::default(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            signin: SigninConfig::default(),
            trusted_issuer: Vec::new(),
            identity_provider: Vec::new(),
            vault: VaultConfig::default(),
            audit: audit::AuditConfig::default(),
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(15 * 60),
            max_ttl: Duration::from_secs(24 * 3600),
            jwks_max_age: Duration::from_secs(300),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(2),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The environment variables that override settings, and the field each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("CASTELLAN_LISTEN", "listen"),
    ("CASTELLAN_PUBLIC_URL", "public_url"),
    ("CASTELLAN_DATA_DIR", "data_dir"),
    ("CASTELLAN_DATABASE_URL", "database_url"),
    ("CASTELLAN_MASTER_KEY_FILE", "master_key_file"),
    ("CASTELLAN_LOG_FORMAT", "log_format"),
    ("CASTELLAN_LOG_LEVEL", "log_level"),
    ("CASTELLAN_REPLICA_ID", "replica_id"),
    ("CASTELLAN_TOKENS_DEFAULT_TTL", "tokens.default_ttl"),
    ("CASTELLAN_TOKENS_MAX_TTL", "tokens.max_ttl"),
    ("CASTELLAN_TOKENS_JWKS_MAX_AGE", "tokens.jwks_max_age"),
    ("CASTELLAN_STORE_REFRESH_INTERVAL", "store.refresh_interval"),
    ("CASTELLAN_PKI_CRL_VALIDITY", "pki.crl_validity"),
    (
        "CASTELLAN_PKI_ISSUE_CASTELLAN_NAMES",
        "pki.issue_castellan_names",
    ),
    ("CASTELLAN_KEYS_ROTATION_PERIOD", "keys.rotation_period"),
    ("CASTELLAN_KEYS_PREPUBLISH", "keys.prepublish"),
    ("CASTELLAN_KEYS_RETIRE_AFTER", "keys.retire_after"),
    ("CASTELLAN_TLS_MODE", "tls.mode"),
    ("CASTELLAN_TLS_CERT_FILE", "tls.cert_file"),
    ("CASTELLAN_TLS_KEY_FILE", "tls.key_file"),
    ("CASTELLAN_TLS_RELOAD_INTERVAL", "tls.reload_interval"),
    ("CASTELLAN_TLS_NAMES", "tls.names"),
    ("CASTELLAN_TLS_TTL", "tls.ttl"),
    ("CASTELLAN_HTTP_HEADER_TIMEOUT", "http.header_timeout"),
    ("CASTELLAN_HTTP_REQUEST_TIMEOUT", "http.request_timeout"),
    ("CASTELLAN_HTTP_MAX_CONNECTIONS", "http.max_connections"),
];

impl Config {
    /// Parses a TOML document (`path` only names it in errors) and validates it.
    pub fn from_toml(path: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&path.display().to_string(), &text)
    }

    /// Applies `CASTELLAN_*` overrides from `env`.
    pub fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        for (var, _) in ENV_VARS {
            let Some(value) = env.get(*var) else { continue };
            let bad = |message: String| ConfigError::Env {
                var: (*var).to_owned(),
                message,
            };
            let non_empty = || (!value.is_empty()).then(|| value.clone());
            match *var {
                "CASTELLAN_LISTEN" => {
                    self.listen = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "CASTELLAN_PUBLIC_URL" => self.public_url = non_empty(),
                "CASTELLAN_DATA_DIR" => self.data_dir = PathBuf::from(value),
                "CASTELLAN_DATABASE_URL" => self.database_url = non_empty(),
                "CASTELLAN_MASTER_KEY_FILE" => {
                    self.master_key_file = non_empty().map(PathBuf::from)
                }
                "CASTELLAN_LOG_FORMAT" => {
                    self.log_format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => return Err(bad("expected `text` or `json`".into())),
                    }
                }
                "CASTELLAN_LOG_LEVEL" => self.log_level = value.clone(),
                "CASTELLAN_REPLICA_ID" => self.replica_id = non_empty(),
                "CASTELLAN_TOKENS_DEFAULT_TTL" => {
                    self.tokens.default_ttl = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_TOKENS_MAX_TTL" => {
                    self.tokens.max_ttl = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_TOKENS_JWKS_MAX_AGE" => {
                    self.tokens.jwks_max_age = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_KEYS_ROTATION_PERIOD" => {
                    self.keys.rotation_period = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_KEYS_PREPUBLISH" => {
                    self.keys.prepublish = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_KEYS_RETIRE_AFTER" => {
                    self.keys.retire_after = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_PKI_CRL_VALIDITY" => {
                    self.pki.crl_validity = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_PKI_ISSUE_CASTELLAN_NAMES" => {
                    self.pki.issue_castellan_names = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("expected `true` or `false`".into())),
                    }
                }
                "CASTELLAN_STORE_REFRESH_INTERVAL" => {
                    self.store.refresh_interval = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_TLS_MODE" => {
                    self.tls.mode = match value.as_str() {
                        "off" => TlsMode::Off,
                        "files" => TlsMode::Files,
                        "self-issued" => TlsMode::SelfIssued,
                        _ => return Err(bad("expected `off`, `files` or `self-issued`".into())),
                    }
                }
                "CASTELLAN_TLS_CERT_FILE" => self.tls.cert_file = non_empty().map(PathBuf::from),
                "CASTELLAN_TLS_KEY_FILE" => self.tls.key_file = non_empty().map(PathBuf::from),
                "CASTELLAN_TLS_RELOAD_INTERVAL" => {
                    self.tls.reload_interval = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_TLS_NAMES" => {
                    self.tls.names = value
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "CASTELLAN_TLS_TTL" => self.tls.ttl = parse_duration(value).map_err(bad)?,
                "CASTELLAN_HTTP_HEADER_TIMEOUT" => {
                    self.http.header_timeout = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_HTTP_REQUEST_TIMEOUT" => {
                    self.http.request_timeout = parse_duration(value).map_err(bad)?
                }
                "CASTELLAN_HTTP_MAX_CONNECTIONS" => {
                    self.http.max_connections = value
                        .parse()
                        .map_err(|_| bad(format!("`{value}` is not a number of connections")))?
                }
                _ => {}
            }
        }
        for (var, value) in env {
            self.audit.apply_env(var, value)?;
        }
        self.validate()
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url
            && (!(url.starts_with("http://") || url.starts_with("https://")) || url.ends_with('/'))
        {
            return Err(ConfigError::Invalid {
                field: "public_url",
                message: format!("`{url}` must be an http(s) URL without a trailing slash"),
            });
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            return Err(ConfigError::Invalid {
                field: "database_url",
                message: "expected postgres://… (or sqlite:…)".into(),
            });
        }
        if self.tokens.default_ttl.is_zero() || self.tokens.default_ttl > self.tokens.max_ttl {
            return Err(ConfigError::Invalid {
                field: "tokens.default_ttl",
                message: "must be more than zero and at most tokens.max_ttl".into(),
            });
        }
        if self.pki.crl_validity < Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                field: "pki.crl_validity",
                message: "must be at least 60s".into(),
            });
        }
        self.profiles()?;
        self.rotation_policy()?;
        trusted_issuer::validate(&self.trusted_issuer, self.tokens.max_ttl)?;
        identity_provider::validate(&self.identity_provider)?;
        self.vault.settings(self.tokens.max_ttl)?;
        self.tls_source()?;
        self.signin.settings()?;
        self.audit.settings()?;
        let h = &self.http;
        for (field, d, max) in [
            (
                "http.header_timeout",
                h.header_timeout,
                Duration::from_secs(600),
            ),
            (
                "http.request_timeout",
                h.request_timeout,
                Duration::from_secs(3600),
            ),
        ] {
            if d < Duration::from_secs(1) || d > max {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("must be from 1s to {}", humantime::format_duration(max)),
                });
            }
        }
        if !(1..=1_000_000).contains(&h.max_connections) {
            return Err(ConfigError::Invalid {
                field: "http.max_connections",
                message: "must be from 1 to 1000000".into(),
            });
        }
        if self.store.refresh_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                field: "store.refresh_interval",
                message: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }

    /// The rotation policy, checked against the token lifetimes and the JWKS max-age: a configuration
    /// whose windows cannot work is refused with the reason.
    pub fn rotation_policy(&self) -> Result<castellan_core::token::Policy, ConfigError> {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        let policy = castellan_core::token::Policy {
            rotation_period: secs(self.keys.rotation_period),
            prepublish: secs(self.keys.prepublish),
            retire_after: secs(self.keys.retire_after),
        };
        policy
            .validate(
                secs(self.tokens.jwks_max_age),
                secs(self.tokens.max_ttl),
                VERIFIER_LEEWAY_SECS,
            )
            .map_err(|e| ConfigError::Invalid {
                field: "keys",
                message: e.to_string(),
            })?;
        Ok(policy)
    }

    /// The certificate profiles: built-ins plus configured ones (validated).
    pub fn profiles(&self) -> Result<castellan_core::pki::Profiles, ConfigError> {
        castellan_core::pki::Profiles::new(self.pki.profiles.clone()).map_err(|e| {
            ConfigError::Invalid {
                field: "pki.profiles",
                message: e.to_string(),
            }
        })
    }

    /// The CRL distribution point put into certificates: only when `public_url` is configured.
    pub fn crl_url(&self) -> Option<String> {
        self.public_url.as_ref().map(|u| format!("{u}/v1/pki/crl"))
    }

    /// The issuer: `public_url`, or `http://<listen>`.
    pub fn issuer(&self) -> String {
        let scheme = match self.tls.mode {
            TlsMode::Off => "http",
            TlsMode::Files | TlsMode::SelfIssued => "https",
        };
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }

    /// The limits connections are served with (`[http]`).
    pub fn http_limits(&self) -> Limits {
        Limits {
            header_timeout: self.http.header_timeout,
            request_timeout: self.http.request_timeout,
            max_connections: self.http.max_connections,
            ..Limits::default()
        }
    }

    /// The store URL: `database_url`, or SQLite at `<data_dir>/castellan.db`.
    pub fn store_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| castellan_store::sqlite_url(&self.data_dir.join("castellan.db")))
    }

    /// The master key file: `master_key_file`, or `<data_dir>/master.key`.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }
}

/// The limits every connection is served with (`[http]`); [`crate::listen`] applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time for a request's headers to arrive, counted from the moment the connection waits for
    /// them (so an idle kept-alive connection is closed after this long too).
    pub header_timeout: Duration,
    /// Time for a request with a body, from its headers to its answer; past it the answer is 408.
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in progress.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 4096,
            drain: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests;
