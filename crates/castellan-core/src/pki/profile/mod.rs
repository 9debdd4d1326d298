//! Certificate profiles: what a certificate is for, which names it may carry, how long it may live and
//! which keys it may have.
//!
//! # Built-in profiles
//!
//! | name     | purpose (EKU)              | names      | max TTL | default TTL | key types |
//! |----------|----------------------------|------------|---------|-------------|-----------|
//! | `server` | serverAuth                 | any        | 90 days | 30 days     | all, P-256 by default |
//! | `client` | clientAuth                 | any        | 90 days | 30 days     | all, P-256 by default |
//! | `peer`   | serverAuth and clientAuth  | any        | 90 days | 30 days     | all, P-256 by default |
//!
//! Built-ins leave access control to the caller's scopes. Configured profiles narrow names down.
//!
//! # Patterns
//!
//! * DNS names (`allowed_dns`), compared case-insensitively:
//!   `*` allows every name; `*.svc.local` allows exactly one label before `svc.local` (`a.svc.local`,
//!   and the wildcard `*.svc.local` itself, but not `a.b.svc.local`); `**.svc.local` allows one or more
//!   labels (`a.svc.local`, `a.b.svc.local`, `*.a.svc.local`); anything else must match exactly.
//! * IP addresses (`allowed_ips`): `*`, an exact address (`10.0.0.7`, `::1`) or a CIDR block
//!   (`10.0.0.0/8`, `fd00::/8`, host bits zero).
//! * URIs (`allowed_uris`): `*` alone allows every URI; otherwise a glob, case-sensitive, in which
//!   `*` matches any run of characters within one path segment (not `/`) and `**` any run across
//!   segments: `spiffe://cluster.local/ns/prod/*` allows `…/ns/prod/web` but not `…/ns/prod/sa/web`,
//!   `spiffe://cluster.local/ns/prod/**` allows both. Requested URIs must not hold `.` or `..` path
//!   segments, `%`, `?`, `#` or userinfo, or be longer than 2048 bytes.
//! * Common names (`allowed_common_names`): globs in which `*` matches any run of characters,
//!   `/` included. When the list is empty (the default for configured profiles) the common name must
//!   be one of the certificate's own SANs, so it never claims a name the SAN patterns would refuse.
//!
//! An empty DNS, IP or URI list (the default for configured profiles) allows no name of that kind.

mod bounds;
mod pattern;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;

use rcgen::ExtendedKeyUsagePurpose;
use serde::{Deserialize, Serialize};

use super::{KeyType, PkiError, human_secs};

pub use bounds::{ClientPatterns, MAX_CLIENT_PATTERNS, NameBounds};

use pattern::{
    IpPattern, check_cn, check_dns_pattern, check_uri, dns_matches, glob, normalize_dns, uri_glob,
};

/// The most subject alternative names one certificate may carry.
pub const MAX_SANS: usize = 100;

/// The longest common name X.520 allows.
const MAX_CN_LEN: usize = 64;

/// The longest lifetime the built-in profiles allow, seconds (90 days).
pub const BUILTIN_MAX_TTL: u64 = 90 * 86_400;
const DEFAULT_TTL: u64 = 30 * 86_400;

/// What a certificate is for: decides its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A TLS server (EKU serverAuth).
    Server,
    /// A TLS client (EKU clientAuth).
    Client,
    /// Both ends of mutual TLS (EKU serverAuth and clientAuth).
    Peer,
}

impl Purpose {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Server => "server",
            Purpose::Client => "client",
            Purpose::Peer => "peer",
        }
    }

    /// Whether certificates of this purpose authenticate TLS servers.
    pub fn server_auth(self) -> bool {
        matches!(self, Purpose::Server | Purpose::Peer)
    }

    /// Whether certificates of this purpose authenticate TLS clients.
    pub fn client_auth(self) -> bool {
        matches!(self, Purpose::Client | Purpose::Peer)
    }

    pub(crate) fn ekus(self) -> Vec<ExtendedKeyUsagePurpose> {
        let mut v = Vec::with_capacity(2);
        if self.server_auth() {
            v.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if self.client_auth() {
            v.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        v
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Purpose {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, PkiError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "server" => Ok(Purpose::Server),
            "client" => Ok(Purpose::Client),
            "peer" => Ok(Purpose::Peer),
            _ => Err(PkiError::UnknownPurpose {
                value: s.to_owned(),
            }),
        }
    }
}

/// The kind of a subject alternative name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SanKind {
    /// A DNS name.
    Dns,
    /// An IP address.
    Ip,
    /// A URI.
    Uri,
}

impl std::fmt::Display for SanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SanKind::Dns => "DNS name",
            SanKind::Ip => "IP address",
            SanKind::Uri => "URI",
        })
    }
}

fn default_max_ttl() -> u64 {
    BUILTIN_MAX_TTL
}

fn all_key_types() -> Vec<KeyType> {
    KeyType::ALL.to_vec()
}

/// A certificate profile. Deserializes from config (unknown fields are refused); see the module
/// documentation for the pattern syntax and the built-ins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The name requests refer to: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// What the certificates are for.
    pub purpose: Purpose,
    /// DNS name patterns. Empty: no DNS names.
    #[serde(default)]
    pub allowed_dns: Vec<String>,
    /// IP patterns (exact or CIDR). Empty: no IP addresses.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// URI globs. Empty: no URIs.
    #[serde(default)]
    pub allowed_uris: Vec<String>,
    /// Common name globs. Empty: the common name must be one of the certificate's SANs.
    #[serde(default)]
    pub allowed_common_names: Vec<String>,
    /// The longest lifetime, in seconds (default 90 days).
    #[serde(default = "default_max_ttl")]
    pub max_ttl_secs: u64,
    /// The lifetime when a request gives none (default: 30 days, or `max_ttl_secs` if shorter).
    #[serde(default)]
    pub default_ttl_secs: Option<u64>,
    /// The key types requests may ask for (default: all).
    #[serde(default = "all_key_types")]
    pub key_types: Vec<KeyType>,
    /// The key type when a request gives none (default P-256); must be in `key_types`.
    #[serde(default)]
    pub default_key_type: KeyType,
    /// Bounds of one request beyond the patterns above (the caller's own certificate names, the
    /// names never issued): set per request by the service layer, never configured.
    #[serde(skip)]
    pub bounds: Option<NameBounds>,
}

impl Profile {
    /// A profile allowing every name, with the built-in limits (90 days max, 30 days default, every key
    /// type, P-256 by default).
    pub fn allow_all(name: &str, purpose: Purpose) -> Self {
        let all = vec!["*".to_owned()];
        Self {
            name: name.to_owned(),
            purpose,
            allowed_dns: all.clone(),
            allowed_ips: all.clone(),
            allowed_uris: all.clone(),
            allowed_common_names: all,
            max_ttl_secs: BUILTIN_MAX_TTL,
            default_ttl_secs: Some(DEFAULT_TTL),
            key_types: all_key_types(),
            default_key_type: KeyType::P256,
            bounds: None,
        }
    }

    /// This profile, with `bounds` on top of its patterns (a name must pass both).
    pub fn bounded(&self, bounds: NameBounds) -> Self {
        Self {
            bounds: Some(bounds),
            ..self.clone()
        }
    }

    /// The built-in profiles `server`, `client` and `peer`.
    pub fn builtins() -> [Profile; 3] {
        [
            Self::allow_all("server", Purpose::Server),
            Self::allow_all("client", Purpose::Client),
            Self::allow_all("peer", Purpose::Peer),
        ]
    }

    /// The built-in profile of that name.
    pub fn builtin(name: &str) -> Option<Profile> {
        Self::builtins().into_iter().find(|p| p.name == name)
    }

    /// Checks the definition: name, patterns, TTLs and key types.
    pub fn validate(&self) -> Result<(), PkiError> {
        let invalid = |reason: String| PkiError::InvalidProfile {
            profile: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                "the name must be non-empty lowercase letters, digits, `-` or `_`".to_owned(),
            ));
        }
        for p in &self.allowed_dns {
            check_dns_pattern(p).map_err(|r| invalid(format!("DNS pattern `{p}`: {r}")))?;
        }
        for p in &self.allowed_ips {
            IpPattern::parse(p).map_err(|r| invalid(format!("IP pattern `{p}`: {r}")))?;
        }
        for p in self.allowed_uris.iter().chain(&self.allowed_common_names) {
            if p.is_empty() || p.chars().any(|c| c.is_control()) {
                return Err(invalid(format!(
                    "pattern `{p}` is empty or has control characters"
                )));
            }
        }
        if self.max_ttl_secs == 0 {
            return Err(invalid("max_ttl_secs must be at least 1".to_owned()));
        }
        if let Some(d) = self.default_ttl_secs
            && (d == 0 || d > self.max_ttl_secs)
        {
            return Err(invalid(format!(
                "default_ttl_secs ({}) must be between 1s and max_ttl_secs ({})",
                human_secs(d),
                human_secs(self.max_ttl_secs)
            )));
        }
        if self.key_types.is_empty() {
            return Err(invalid(
                "key_types must list at least one key type".to_owned(),
            ));
        }
        if !self.key_types.contains(&self.default_key_type) {
            return Err(invalid(format!(
                "default_key_type {} is not in key_types ({})",
                self.default_key_type,
                list(&self.key_types)
            )));
        }
        Ok(())
    }

    /// The lifetime of a certificate: the requested TTL or the profile default, never above the
    /// maximum.
    pub fn check_ttl(&self, requested: Option<u64>) -> Result<u64, PkiError> {
        let ttl = requested.unwrap_or_else(|| {
            self.default_ttl_secs
                .unwrap_or(DEFAULT_TTL.min(self.max_ttl_secs))
        });
        if ttl == 0 {
            return Err(PkiError::TtlZero);
        }
        if ttl > self.max_ttl_secs {
            return Err(PkiError::TtlTooLong {
                requested: human_secs(ttl),
                max: human_secs(self.max_ttl_secs),
                profile: self.name.clone(),
            });
        }
        Ok(ttl)
    }

    /// The key type of a certificate: the requested one or the profile default, if the profile allows it.
    pub fn check_key_type(&self, requested: Option<KeyType>) -> Result<KeyType, PkiError> {
        let kt = requested.unwrap_or(self.default_key_type);
        if !self.key_types.contains(&kt) {
            return Err(PkiError::KeyTypeNotAllowed {
                key_type: kt.to_string(),
                profile: self.name.clone(),
                allowed: list(&self.key_types),
            });
        }
        Ok(kt)
    }

    /// Checks and normalizes the names of a request: syntax, the profile's patterns, duplicates
    /// (removed; DNS names lowercased) and the common name rule.
    pub fn check_names(
        &self,
        common_name: Option<&str>,
        dns: &[String],
        ips: &[IpAddr],
        uris: &[String],
    ) -> Result<Names, PkiError> {
        let count = dns.len() + ips.len() + uris.len();
        if count > MAX_SANS {
            return Err(PkiError::TooManySans {
                count,
                max: MAX_SANS,
            });
        }
        let mut out = Names::default();
        for name in dns {
            let n = normalize_dns(name)?;
            if !self.allowed_dns.iter().any(|p| dns_matches(p, &n)) {
                return Err(self.san_refused(SanKind::Dns, name, &self.allowed_dns));
            }
            if !out.dns.contains(&n) {
                out.dns.push(n);
            }
        }
        for requested in ips {
            // `::ffff:a.b.c.d` is a.b.c.d to Go, Java and most TLS stacks: match, dedup and sign the
            // 4-byte form, so an IPv4-mapped address can neither slip past the IPv4 patterns nor put
            // an address in the certificate that the patterns did not see.
            let ip = requested.to_canonical();
            let allowed = self
                .allowed_ips
                .iter()
                .any(|p| IpPattern::parse(p).is_ok_and(|p| p.matches(ip)));
            if !allowed {
                return Err(self.san_refused(
                    SanKind::Ip,
                    &requested.to_string(),
                    &self.allowed_ips,
                ));
            }
            if !out.ips.contains(&ip) {
                out.ips.push(ip);
            }
        }
        for uri in uris {
            check_uri(uri)?;
            if !self
                .allowed_uris
                .iter()
                .any(|p| p == "*" || uri_glob(p, uri))
            {
                return Err(self.san_refused(SanKind::Uri, uri, &self.allowed_uris));
            }
            if !out.uris.contains(uri) {
                out.uris.push(uri.clone());
            }
        }
        out.common_name = match common_name.map(str::trim).filter(|c| !c.is_empty()) {
            Some(cn) => {
                check_cn(cn)?;
                self.check_cn_allowed(cn, &out)?;
                Some(cn.to_owned())
            }
            // The first DNS name that fits a common name (at most 64 characters, X.520's bound); with
            // none, the subject carries no CN and the SANs name the holder (as RFC 5280 prefers).
            None => out
                .dns
                .iter()
                .find(|d| d.chars().count() <= MAX_CN_LEN)
                .cloned(),
        };
        if out.common_name.is_none() && out.is_empty() {
            return Err(PkiError::NoSubjectName);
        }
        if let Some(b) = &self.bounds {
            b.check(&out)?;
        }
        Ok(out)
    }

    fn check_cn_allowed(&self, cn: &str, names: &Names) -> Result<(), PkiError> {
        let refused = |reason: String| PkiError::CommonNameNotAllowed {
            value: cn.to_owned(),
            profile: self.name.clone(),
            reason,
        };
        if self.allowed_common_names.is_empty() {
            let lower = cn.to_ascii_lowercase();
            let is_san = names.dns.contains(&lower)
                || names
                    .ips
                    .iter()
                    .any(|ip| cn.parse::<IpAddr>().is_ok_and(|c| c.to_canonical() == *ip))
                || names.uris.iter().any(|u| u == cn);
            if !is_san {
                return Err(refused(
                    "this profile requires the common name to be one of the certificate's DNS names, IP addresses \
                     or URIs"
                        .to_owned(),
                ));
            }
            return Ok(());
        }
        if self
            .allowed_common_names
            .iter()
            .any(|p| p == "*" || glob(p, cn))
        {
            Ok(())
        } else {
            Err(refused(format!(
                "allowed: {}",
                self.allowed_common_names.join(", ")
            )))
        }
    }

    fn san_refused(&self, kind: SanKind, value: &str, patterns: &[String]) -> PkiError {
        PkiError::SanNotAllowed {
            kind,
            value: value.to_owned(),
            profile: self.name.clone(),
            allowed: if patterns.is_empty() {
                "none".to_owned()
            } else {
                patterns.join(", ")
            },
        }
    }
}

/// The checked names of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// The subject common name, if any (the first DNS name when none was asked for).
    pub common_name: Option<String>,
    /// DNS names, lowercase, without duplicates.
    pub dns: Vec<String>,
    /// IP addresses, without duplicates.
    pub ips: Vec<IpAddr>,
    /// URIs, without duplicates.
    pub uris: Vec<String>,
}

impl Names {
    /// Whether there is no subject alternative name.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ips.is_empty() && self.uris.is_empty()
    }
}

/// The built-in profiles and the configured ones, by name.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

impl Default for Profiles {
    fn default() -> Self {
        Self {
            by_name: Profile::builtins()
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
        }
    }
}

impl Profiles {
    /// The built-ins plus `configured`, each validated. A configured profile named like a built-in
    /// replaces it; two configured profiles with one name are refused.
    pub fn new(configured: impl IntoIterator<Item = Profile>) -> Result<Self, PkiError> {
        let mut out = Self::default();
        let mut seen = std::collections::BTreeSet::new();
        for p in configured {
            p.validate()?;
            if !seen.insert(p.name.clone()) {
                return Err(PkiError::InvalidProfile {
                    profile: p.name.clone(),
                    reason: "defined more than once".to_owned(),
                });
            }
            out.by_name.insert(p.name.clone(), p);
        }
        Ok(out)
    }

    /// The profile of that name.
    pub fn get(&self, name: &str) -> Result<&Profile, PkiError> {
        self.by_name
            .get(name)
            .ok_or_else(|| PkiError::UnknownProfile {
                name: name.to_owned(),
                known: self.by_name.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Every profile, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.by_name.values()
    }
}

fn list(kts: &[KeyType]) -> String {
    kts.iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
