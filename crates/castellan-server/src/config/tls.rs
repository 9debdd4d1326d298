//! `[tls]`: how the API is served (plain HTTP, certificate files, or a certificate the replica
//! issues itself), and Castellan's own names, which are never issued to a caller.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigError, duration};

/// How the API is served: plain HTTP, or HTTPS with a certificate from files or issued by the replica
/// itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain HTTP (behind a TLS-terminating proxy, or on a laptop).
    Off,
    /// `cert_file` and `key_file`.
    Files,
    /// Each replica issues its own certificate from the store's CA and renews it.
    SelfIssued,
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `off`, `files` or `self-issued`.
    pub mode: TlsMode,
    /// files: the certificate chain, leaf first (PEM).
    pub cert_file: Option<PathBuf>,
    /// files: the private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key_file: Option<PathBuf>,
    /// files: how often they are checked for a change.
    #[serde(deserialize_with = "duration")]
    pub reload_interval: Duration,
    /// self-issued: the DNS names and IP addresses clients reach this replica by. Default: the host of
    /// `public_url`, and the listen address unless it is a wildcard (with `localhost` for a loopback one).
    pub names: Vec<String>,
    /// self-issued: the certificate's lifetime; it is renewed at two thirds of it.
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            mode: TlsMode::Off,
            cert_file: None,
            key_file: None,
            reload_interval: Duration::from_secs(30),
            names: Vec::new(),
            ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Where the listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// A PEM chain (leaf first) and its PEM key, re-read every `reload_interval` when they change.
    Files {
        /// The chain file.
        cert: PathBuf,
        /// The key file (PKCS#8, SEC1 or PKCS#1).
        key: PathBuf,
        /// How often the files are checked for a change.
        reload_interval: Duration,
    },
    /// A certificate this replica issues itself from the store's issuing CA.
    SelfIssued {
        /// DNS names.
        dns_names: Vec<String>,
        /// IP addresses.
        ip_addresses: Vec<IpAddr>,
        /// Lifetime; renewed at two thirds of it.
        ttl: Duration,
    },
}

/// Sorts names into IP addresses and DNS names (lowercase, checked for shape).
fn split_names(names: &[String]) -> Result<(Vec<String>, Vec<std::net::IpAddr>), String> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in names {
        if let Ok(ip) = name.parse::<std::net::IpAddr>() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if lower.len() > 253 || !lower.split('.').all(label_ok) {
            return Err(format!(
                "`{}` is neither a DNS name nor an IP address",
                name.escape_debug()
            ));
        }
        if !dns.contains(&lower) {
            dns.push(lower);
        }
    }
    Ok((dns, ips))
}

impl Config {
    /// Where the listener's certificate comes from; `None` for plain HTTP.
    pub fn tls_source(&self) -> Result<Option<TlsSource>, ConfigError> {
        let invalid =
            |field: &'static str, message: String| ConfigError::Invalid { field, message };
        let t = &self.tls;
        if t.mode != TlsMode::Off
            && let Some(url) = &self.public_url
            && url.starts_with("http://")
        {
            return Err(invalid(
                "public_url",
                format!("`{url}` is http:// but tls.mode serves HTTPS"),
            ));
        }
        match t.mode {
            TlsMode::Off => Ok(None),
            TlsMode::Files => {
                let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) else {
                    return Err(invalid(
                        "tls",
                        "mode \"files\" needs both cert_file and key_file".into(),
                    ));
                };
                if t.reload_interval < Duration::from_secs(1) {
                    return Err(invalid("tls.reload_interval", "must be at least 1s".into()));
                }
                Ok(Some(TlsSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    reload_interval: t.reload_interval,
                }))
            }
            TlsMode::SelfIssued => {
                let max = Duration::from_secs(castellan_core::pki::BUILTIN_MAX_TTL);
                if t.ttl < Duration::from_secs(10) || t.ttl > max {
                    return Err(invalid(
                        "tls.ttl",
                        format!("must be between 10s and {} days", max.as_secs() / 86_400),
                    ));
                }
                let (dns_names, ip_addresses) =
                    split_names(&self.tls_names()).map_err(|m| invalid("tls.names", m))?;
                if dns_names.is_empty() && ip_addresses.is_empty() {
                    return Err(invalid(
                        "tls.names",
                        "name the DNS names or IP addresses clients reach this server by (the \
                         listen address is a wildcard and there is no public_url)"
                            .into(),
                    ));
                }
                Ok(Some(TlsSource::SelfIssued {
                    dns_names,
                    ip_addresses,
                    ttl: t.ttl,
                }))
            }
        }
    }

    /// The host of `public_url` (an IPv6 address without its brackets).
    fn public_host(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .and_then(|u| u.parse::<axum::http::Uri>().ok())
            .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()))
    }

    /// The names of a self-issued certificate: `tls.names`, or else the host of `public_url` and the
    /// listen address unless it is a wildcard (with `localhost` for a loopback one).
    fn tls_names(&self) -> Vec<String> {
        if !self.tls.names.is_empty() {
            return self.tls.names.clone();
        }
        let mut names = Vec::new();
        names.extend(self.public_host());
        let ip = self.listen.ip();
        if !ip.is_unspecified() {
            if ip.is_loopback() {
                names.push("localhost".to_owned());
            }
            names.push(ip.to_string());
        }
        names.dedup();
        names
    }

    /// Castellan's own API names, never issued to a caller unless `pki.issue_castellan_names`: with TLS
    /// on, the names of its certificate (`tls.names`, or the public URL's host and the listen address);
    /// with an `https://` public URL (a TLS proxy in front), its host. DNS names lowercase.
    pub fn castellan_names(&self) -> Vec<String> {
        let https = self
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if self.tls.mode == TlsMode::Off && !https {
            return Vec::new();
        }
        let mut names = self.tls_names();
        names.extend(self.public_host());
        let mut names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        names
    }
}
