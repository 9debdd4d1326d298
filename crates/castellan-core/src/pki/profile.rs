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

use std::collections::BTreeMap;
use std::net::IpAddr;

use rcgen::ExtendedKeyUsagePurpose;
use rustls_pki_types::DnsName;
use serde::{Deserialize, Serialize};

use super::{KeyType, PkiError, human_secs};

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

/// Validates and lowercases a requested DNS name. A wildcard is allowed only as the whole leftmost
/// label, followed by at least two labels.
pub(crate) fn normalize_dns(name: &str) -> Result<String, PkiError> {
    let invalid = |reason: &str| PkiError::InvalidName {
        kind: "DNS name",
        value: name.to_owned(),
        reason: reason.to_owned(),
    };
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err(invalid("empty"));
    }
    if lower.ends_with('.') {
        return Err(invalid("remove the trailing dot"));
    }
    if lower.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    if lower.parse::<IpAddr>().is_ok() {
        return Err(invalid("this is an IP address; request it as an IP SAN"));
    }
    let rest = match lower.strip_prefix("*.") {
        Some(rest) => {
            if rest.split('.').count() < 2 {
                return Err(invalid("a wildcard needs at least two labels after `*.`"));
            }
            rest
        }
        None => &lower,
    };
    if rest.contains('*') {
        return Err(invalid("`*` may only be the whole leftmost label"));
    }
    DnsName::try_from(rest).map_err(|_| invalid("not a valid DNS name"))?;
    Ok(lower)
}

fn check_dns_pattern(p: &str) -> Result<(), String> {
    if p == "*" {
        return Ok(());
    }
    if p != p.to_ascii_lowercase() {
        return Err("patterns must be lowercase".to_owned());
    }
    let rest = p
        .strip_prefix("**.")
        .or_else(|| p.strip_prefix("*."))
        .unwrap_or(p);
    if rest.contains('*') {
        return Err("`*` and `**` may only be the whole leftmost label".to_owned());
    }
    DnsName::try_from(rest)
        .map(|_| ())
        .map_err(|_| "not a valid DNS name".to_owned())
}

/// Whether a normalized DNS name matches a pattern (see the module documentation).
pub(crate) fn dns_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix("**.") {
        return name
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|head| !head.is_empty());
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return name
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'));
    }
    pattern == name
}

enum IpPattern {
    Any,
    Net(IpAddr, u8),
}

impl IpPattern {
    fn parse(p: &str) -> Result<Self, String> {
        if p == "*" {
            return Ok(IpPattern::Any);
        }
        let (addr, len) = match p.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (p, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| "not an IP address".to_owned())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("prefix length must be 0..={max}"))?,
            None => max,
        };
        if mask(addr, len) != addr {
            return Err(format!(
                "host bits are set (did you mean {}/{len}?)",
                mask(addr, len)
            ));
        }
        // Requested addresses are matched in canonical form (see `check_names`), so a pattern inside
        // `::ffff:0:0/96` is the IPv4 block it stands for.
        match addr.to_canonical() {
            v4 @ IpAddr::V4(_) if addr.is_ipv6() && len >= 96 => Ok(IpPattern::Net(v4, len - 96)),
            _ => Ok(IpPattern::Net(addr, len)),
        }
    }

    fn matches(&self, ip: IpAddr) -> bool {
        match self {
            IpPattern::Any => true,
            IpPattern::Net(net, len) => net.is_ipv4() == ip.is_ipv4() && mask(ip, *len) == *net,
        }
    }
}

/// The address with every bit after the first `len` cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// A glob where `*` matches any run of characters (including none) and everything else is literal.
pub(crate) fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == value;
    };
    if parts.len() == 1 {
        return pattern == value;
    }
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A URI glob: `*` matches any run of characters within one path segment (it never matches `/`),
/// `**` any run at all; everything else is literal. URI SANs reaching it have passed [`check_uri`], so
/// no dot-segment, percent-escape, query or fragment can make a name look inside a prefix it is not.
pub(crate) fn uri_glob(pattern: &str, value: &str) -> bool {
    enum Tok {
        Lit(u8),
        Star,
        AnyDepth,
    }
    let p = pattern.as_bytes();
    let mut toks = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'*' {
            let run = p[i..].iter().take_while(|b| **b == b'*').count();
            toks.push(if run > 1 { Tok::AnyDepth } else { Tok::Star });
            i += run;
        } else {
            toks.push(Tok::Lit(p[i]));
            i += 1;
        }
    }
    // `m[j]`: the tokens so far match the first `j` bytes of the value. Bytes, not chars: `*` and `/`
    // are ASCII, so a UTF-8 pattern still only matches whole characters of the value.
    let v = value.as_bytes();
    let mut m = vec![false; v.len() + 1];
    m[0] = true;
    for tok in &toks {
        let mut next = vec![false; v.len() + 1];
        for j in 0..=v.len() {
            next[j] = match tok {
                Tok::Lit(c) => j > 0 && m[j - 1] && v[j - 1] == *c,
                Tok::Star => m[j] || (j > 0 && next[j - 1] && v[j - 1] != b'/'),
                Tok::AnyDepth => m[j] || (j > 0 && next[j - 1]),
            };
        }
        m = next;
    }
    m[v.len()]
}

/// The longest URI SAN accepted, bytes.
const MAX_URI_LEN: usize = 2048;

/// A URI SAN: `scheme:rest` of the characters RFC 3986 allows, without a percent-escape, query,
/// fragment, userinfo or `.`/`..` path segment. Each of those lets one identity be spelled two ways
/// (`/ns/prod/../kube-system`, `%2F`, `user@host`), so a verifier that normalizes could see a name
/// other than the one the profile's patterns checked.
fn check_uri(uri: &str) -> Result<(), PkiError> {
    let invalid = |reason: &str| PkiError::InvalidName {
        kind: "URI",
        value: uri.to_owned(),
        reason: reason.to_owned(),
    };
    if uri.len() > MAX_URI_LEN {
        return Err(invalid("longer than 2048 bytes"));
    }
    if let Some(c) = uri.chars().find(|c| matches!(c, '%' | '?' | '#')) {
        return Err(invalid(&format!(
            "`{c}` is not allowed (no percent-escapes, queries or fragments)"
        )));
    }
    let rfc3986 = |c: char| c.is_ascii_alphanumeric() || "-._~:/[]@!$&'()*+,;=".contains(c);
    if !uri.chars().all(rfc3986) {
        return Err(invalid(
            "only the characters RFC 3986 allows in a URI are accepted (letters, digits and -._~:/[]@!$&'()*+,;=)",
        ));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(invalid(
            "a URI needs a scheme, such as `spiffe:` or `https:`",
        ));
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() {
        return Err(invalid("not of the form `scheme:rest`"));
    }
    let path = match rest.strip_prefix("//") {
        Some(hier) => {
            let (authority, path) = hier.split_at(hier.find('/').unwrap_or(hier.len()));
            if authority.contains('@') {
                return Err(invalid("userinfo (`user@`) is not allowed"));
            }
            path
        }
        None => rest,
    };
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(invalid("`.` and `..` path segments are not allowed"));
    }
    Ok(())
}

fn check_cn(cn: &str) -> Result<(), PkiError> {
    let invalid = |reason: &str| PkiError::InvalidName {
        kind: "common name",
        value: cn.to_owned(),
        reason: reason.to_owned(),
    };
    if cn.chars().count() > MAX_CN_LEN {
        return Err(invalid("longer than 64 characters"));
    }
    if cn.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_patterns() {
        assert!(dns_matches("*", "anything.example"));
        assert!(dns_matches("*.svc.local", "a.svc.local"));
        assert!(dns_matches("*.svc.local", "*.svc.local"));
        assert!(!dns_matches("*.svc.local", "a.b.svc.local"));
        assert!(!dns_matches("*.svc.local", "svc.local"));
        assert!(!dns_matches("*.svc.local", "evilsvc.local"));
        assert!(dns_matches("**.svc.local", "a.b.svc.local"));
        assert!(dns_matches("**.svc.local", "*.b.svc.local"));
        assert!(!dns_matches("**.svc.local", "svc.local"));
        assert!(!dns_matches("**.svc.local", "xsvc.local"));
        assert!(dns_matches("broker.local", "broker.local"));
        assert!(!dns_matches("broker.local", "a.broker.local"));
    }

    #[test]
    fn dns_names_are_validated() {
        assert_eq!(normalize_dns("A.Example.COM").expect("ok"), "a.example.com");
        assert_eq!(
            normalize_dns("*.example.com").expect("wildcard"),
            "*.example.com"
        );
        for bad in [
            "",
            "a..b",
            "foo*.example.com",
            "*.com",
            "a.*.example.com",
            "10.0.0.1",
            "x.example.com.",
            "a b.com",
        ] {
            assert!(
                matches!(normalize_dns(bad), Err(PkiError::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn ip_patterns() {
        let p = |s: &str| IpPattern::parse(s).expect(s);
        assert!(p("10.0.0.0/8").matches("10.1.2.3".parse().expect("ip")));
        assert!(!p("10.0.0.0/8").matches("11.1.2.3".parse().expect("ip")));
        assert!(p("10.0.0.7").matches("10.0.0.7".parse().expect("ip")));
        assert!(!p("10.0.0.7").matches("10.0.0.8".parse().expect("ip")));
        assert!(p("fd00::/8").matches("fd12::1".parse().expect("ip")));
        assert!(!p("fd00::/8").matches("10.0.0.1".parse().expect("ip")));
        assert!(p("0.0.0.0/0").matches("1.2.3.4".parse().expect("ip")));
        assert!(p("*").matches("::1".parse().expect("ip")));
        assert!(IpPattern::parse("10.0.0.1/8").is_err());
        assert!(IpPattern::parse("10.0.0.0/33").is_err());
        assert!(IpPattern::parse("nope").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob(
            "spiffe://c.local/ns/prod/*",
            "spiffe://c.local/ns/prod/sa/web"
        ));
        assert!(!glob(
            "spiffe://c.local/ns/prod/*",
            "spiffe://c.local/ns/dev/sa/web"
        ));
        assert!(glob("device-*-eu", "device-17-eu"));
        assert!(!glob("device-*-eu", "device-17-us"));
        assert!(glob("a*b*c", "abc"));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().expect(s);
        // An IPv6 block wide enough to hold the mapped range must not let a mapped address past the
        // IPv4 patterns.
        let p = Profile {
            allowed_ips: vec!["10.0.0.0/8".into(), "::/0".into()],
            ..mqtt()
        };
        p.validate().expect("valid");
        let err = p
            .check_names(None, &[], &[ip("::ffff:192.168.1.1")], &[])
            .expect_err("192.168.1.1 is outside 10.0.0.0/8");
        assert!(
            matches!(
                err,
                PkiError::SanNotAllowed {
                    kind: SanKind::Ip,
                    ..
                }
            ),
            "{err:?}"
        );
        // Accepted addresses are the 4-byte form, deduplicated with the plain spelling, and a CN in
        // either spelling names them.
        let names = p
            .check_names(
                Some("::ffff:10.1.1.1"),
                &[],
                &[ip("::ffff:10.1.1.1"), ip("10.1.1.1")],
                &[],
            )
            .expect("inside 10.0.0.0/8");
        assert_eq!(names.ips, [ip("10.1.1.1")]);
        // Patterns written in the mapped form are the IPv4 block they stand for.
        let mapped = Profile {
            allowed_ips: vec!["::ffff:10.0.0.0/104".into()],
            ..mqtt()
        };
        mapped.validate().expect("valid");
        let names = mapped
            .check_names(None, &[], &[ip("10.2.3.4")], &[])
            .expect("10.2.3.4 is inside ::ffff:10.0.0.0/104");
        assert_eq!(names.ips, [ip("10.2.3.4")]);
        assert!(
            mapped
                .check_names(None, &[], &[ip("11.0.0.1")], &[])
                .is_err()
        );
    }

    #[test]
    fn uri_stars_stay_within_a_segment() {
        let p = "spiffe://c.local/ns/prod/*";
        assert!(uri_glob(p, "spiffe://c.local/ns/prod/web"));
        assert!(uri_glob(p, "spiffe://c.local/ns/prod/"));
        assert!(!uri_glob(p, "spiffe://c.local/ns/prod/sa/web"));
        assert!(!uri_glob(p, "spiffe://c.local/ns/dev/web"));
        assert!(uri_glob(
            "spiffe://c.local/ns/*/sa/web",
            "spiffe://c.local/ns/prod/sa/web"
        ));
        assert!(!uri_glob(
            "spiffe://c.local/ns/*/sa/web",
            "spiffe://c.local/ns/a/b/sa/web"
        ));
        assert!(uri_glob(
            "spiffe://c.local/ns/prod/**",
            "spiffe://c.local/ns/prod/sa/web"
        ));
        assert!(uri_glob(
            "spiffe://c.local/**/web",
            "spiffe://c.local/ns/prod/sa/web"
        ));
        assert!(!uri_glob(
            "spiffe://c.local/**/web",
            "spiffe://c.local/ns/prod/sa/api"
        ));
        assert!(uri_glob("urn:device-*-eu", "urn:device-17-eu"));
        assert!(!uri_glob("urn:device-*-eu", "urn:device-17-us"));
        assert!(uri_glob("exact:x", "exact:x"));
        assert!(!uri_glob("exact:x", "exact:xy"));

        let profile = Profile {
            allowed_uris: vec![p.into()],
            ..mqtt()
        };
        profile
            .check_names(None, &[], &[], &["spiffe://c.local/ns/prod/web".into()])
            .expect("one segment");
        let err = profile
            .check_names(None, &[], &[], &["spiffe://c.local/ns/prod/sa/web".into()])
            .expect_err("two segments");
        assert!(
            matches!(
                err,
                PkiError::SanNotAllowed {
                    kind: SanKind::Uri,
                    ..
                }
            ),
            "{err:?}"
        );
        // Common-name globs keep crossing `/`.
        assert!(glob("device-*", "device-a/b"));
    }

    #[test]
    fn uris_with_two_readings_are_refused() {
        let p = Profile {
            allowed_uris: vec!["spiffe://cluster.local/ns/prod/**".into()],
            ..mqtt()
        };
        let long = format!("spiffe://cluster.local/ns/prod/{}", "a".repeat(2048));
        for bad in [
            "spiffe://cluster.local/ns/prod/../../ns/kube-system/sa/admin",
            "spiffe://cluster.local/ns/prod/./web",
            "spiffe://cluster.local/ns/prod/..",
            "spiffe://cluster.local/ns/prod/%2e%2e/x",
            "spiffe://cluster.local/ns/prod/web?x=1",
            "spiffe://cluster.local/ns/prod/web#frag",
            "spiffe://admin@cluster.local/ns/prod/web",
            "spiffe://cluster.local/ns/prod/a\\b",
            &long,
        ] {
            let err = p
                .check_names(None, &[], &[], &[bad.to_owned()])
                .expect_err(bad);
            assert!(
                matches!(err, PkiError::InvalidName { kind: "URI", .. }),
                "{bad}: {err:?}"
            );
        }
        for good in [
            "spiffe://cluster.local/ns/prod/sa/web",
            "spiffe://cluster.local/ns/prod/sa/web.api",
            "spiffe://cluster.local/ns/prod/...",
            "spiffe://cluster.local/ns/prod/@team",
        ] {
            p.check_names(None, &[], &[], &[good.to_owned()])
                .expect(good);
        }
        let err = check_uri("spiffe://c.local/x?y=1").expect_err("query");
        assert!(err.to_string().contains("queries"), "{err}");
        check_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6").expect("urn");
        check_uri("https://[fd00::1]:8443/x").expect("ip literal");
    }

    fn mqtt() -> Profile {
        Profile {
            name: "mqtt".into(),
            purpose: Purpose::Server,
            allowed_dns: vec!["*.svc.local".into(), "broker.local".into()],
            allowed_ips: vec!["10.0.0.0/8".into()],
            allowed_uris: vec![],
            allowed_common_names: vec![],
            max_ttl_secs: 7 * 86_400,
            default_ttl_secs: None,
            key_types: vec![KeyType::P256, KeyType::Ed25519],
            default_key_type: KeyType::P256,
        }
    }

    #[test]
    fn configured_profile_rules() {
        let p = mqtt();
        p.validate().expect("valid");
        assert_eq!(p.check_ttl(None).expect("default"), 7 * 86_400);
        let err = p.check_ttl(Some(8 * 86_400)).expect_err("too long");
        assert_eq!(
            err.to_string(),
            "requested TTL 8d exceeds the maximum of 7d allowed by profile `mqtt`"
        );
        assert!(matches!(p.check_ttl(Some(0)), Err(PkiError::TtlZero)));
        let err = p.check_key_type(Some(KeyType::Rsa2048)).expect_err("rsa");
        assert_eq!(
            err.to_string(),
            "key type rsa-2048 is not allowed by profile `mqtt` (allowed: p-256, ed25519)"
        );

        let names = p
            .check_names(
                None,
                &["A.svc.local".into(), "a.svc.local".into()],
                &["10.1.1.1".parse().expect("ip")],
                &[],
            )
            .expect("names");
        assert_eq!(names.dns, vec!["a.svc.local".to_owned()]);
        assert_eq!(names.common_name.as_deref(), Some("a.svc.local"));

        let err = p
            .check_names(None, &["evil.example".into()], &[], &[])
            .expect_err("san");
        assert_eq!(
            err.to_string(),
            "DNS name `evil.example` is not allowed by profile `mqtt` (allowed: *.svc.local, broker.local)"
        );
        let err = p
            .check_names(None, &[], &["192.168.1.1".parse().expect("ip")], &[])
            .expect_err("ip");
        assert!(matches!(
            err,
            PkiError::SanNotAllowed {
                kind: SanKind::Ip,
                ..
            }
        ));
        let err = p
            .check_names(None, &[], &[], &["spiffe://x/y".into()])
            .expect_err("uri");
        assert!(err.to_string().contains("(allowed: none)"), "{err}");
        let err = p
            .check_names(Some("admin"), &["a.svc.local".into()], &[], &[])
            .expect_err("cn");
        assert!(matches!(err, PkiError::CommonNameNotAllowed { .. }));
        p.check_names(
            Some("10.1.1.1"),
            &[],
            &["10.1.1.1".parse().expect("ip")],
            &[],
        )
        .expect("cn is ip san");
        assert!(matches!(
            p.check_names(None, &[], &[], &[]),
            Err(PkiError::NoSubjectName)
        ));
    }

    #[test]
    fn invalid_profiles_are_refused() {
        let mut p = mqtt();
        p.allowed_dns = vec!["*.Svc.local".into()];
        assert!(matches!(p.validate(), Err(PkiError::InvalidProfile { .. })));
        let mut p = mqtt();
        p.allowed_ips = vec!["10.0.0.1/8".into()];
        assert!(
            p.validate()
                .expect_err("ip")
                .to_string()
                .contains("did you mean 10.0.0.0/8")
        );
        let mut p = mqtt();
        p.default_key_type = KeyType::P384;
        assert!(p.validate().is_err());
        let mut p = mqtt();
        p.default_ttl_secs = Some(30 * 86_400);
        assert!(p.validate().is_err());
        assert!(Profiles::new([mqtt(), mqtt()]).is_err());
    }

    #[test]
    fn profiles_from_config_and_lookup() {
        let p: Profile = serde_json::from_str(
            r#"{"name":"iot","purpose":"client","allowed_common_names":["device-*"],"key_types":["p-256"]}"#,
        )
        .expect("parse");
        assert_eq!(p.max_ttl_secs, BUILTIN_MAX_TTL);
        assert!(p.allowed_dns.is_empty());
        p.check_names(Some("device-1"), &[], &[], &[])
            .expect("cn only");
        assert!(
            serde_json::from_str::<Profile>(r#"{"name":"x","purpose":"server","alowed_dns":[]}"#)
                .is_err()
        );
        let all = Profiles::new([p]).expect("profiles");
        assert_eq!(all.get("iot").expect("iot").purpose, Purpose::Client);
        assert_eq!(all.get("peer").expect("peer").purpose, Purpose::Peer);
        let err = all.get("nope").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown certificate profile `nope` (known: client, iot, peer, server)"
        );
        for b in Profile::builtins() {
            b.validate().expect("builtin valid");
        }
    }
}
