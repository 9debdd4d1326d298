//! Bounds on the names of one request beyond its profile's patterns: the certificate names a client
//! may ask for (its own patterns, set when it is created), and names nobody may be given (Castellan's
//! own API names). A name must pass the profile *and* the bounds.
//!
//! Client patterns are written `dns:PATTERN`, `ip:PATTERN` or `uri:PATTERN`, with the syntax of the
//! profile patterns (see the module documentation of `profile`); without a prefix, a pattern that
//! parses as an IP address or CIDR block is an IP pattern (a bare `*` is a DNS pattern), one with `://` a URI glob, anything else a
//! DNS pattern. With client patterns, a common name must be one of the certificate's own SANs or match
//! one of the client's DNS patterns.

use std::net::IpAddr;

use super::pattern::{IpPattern, check_dns_pattern, dns_matches, uri_glob};
use super::{Names, SanKind};
use crate::pki::PkiError;

/// The most patterns one client may hold.
pub const MAX_CLIENT_PATTERNS: usize = 100;

/// A client's certificate name patterns, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientPatterns {
    dns: Vec<String>,
    ips: Vec<String>,
    uris: Vec<String>,
}

impl ClientPatterns {
    /// Parses and checks patterns (see the module documentation). An empty list is refused: a client
    /// without patterns has none (`None`), not an empty set.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Err("give at least one certificate name pattern".to_owned());
        }
        if patterns.len() > MAX_CLIENT_PATTERNS {
            return Err(format!(
                "at most {MAX_CLIENT_PATTERNS} certificate name patterns"
            ));
        }
        let mut out = Self::default();
        for p in patterns {
            let p = p.as_ref().trim();
            let bad = |why: String| format!("certificate name pattern `{p}`: {why}");
            if p.is_empty() || p.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(bad("empty, or holds spaces or control characters".into()));
            }
            let (kind, body) = match p.split_once(':') {
                Some(("dns", b)) => (SanKind::Dns, b),
                Some(("ip", b)) => (SanKind::Ip, b),
                Some(("uri", b)) => (SanKind::Uri, b),
                _ if p != "*" && IpPattern::parse(p).is_ok() => (SanKind::Ip, p),
                _ if p.contains("://") => (SanKind::Uri, p),
                _ => (SanKind::Dns, p),
            };
            match kind {
                SanKind::Dns => {
                    check_dns_pattern(body).map_err(bad)?;
                    out.dns.push(body.to_owned());
                }
                SanKind::Ip => {
                    IpPattern::parse(body).map_err(bad)?;
                    out.ips.push(body.to_owned());
                }
                SanKind::Uri => {
                    if body.is_empty() {
                        return Err(bad("empty URI glob".into()));
                    }
                    out.uris.push(body.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// The first of `other`'s patterns these do not cover (every name it allows is allowed here), if
    /// any: a client that creates another may give it only names it could be given itself.
    pub fn first_uncovered(&self, other: &ClientPatterns) -> Option<String> {
        let dns = other.dns.iter().find(|o| {
            !self.dns.iter().any(|mine| {
                mine == *o
                    || match o.strip_prefix("**.") {
                        // `**.x` is covered by `**.y` where x is y or below it.
                        Some(x) => mine
                            .strip_prefix("**.")
                            .is_some_and(|y| x == y || x.ends_with(&format!(".{y}"))),
                        // A name or `*.x`: as a (wildcard) name.
                        None => dns_matches(mine, o),
                    }
            })
        });
        if let Some(d) = dns {
            return Some(format!("dns:{d}"));
        }
        let net = |p: &str| match IpPattern::parse(p) {
            Ok(IpPattern::Net(a, l)) => Some((a, l)),
            _ => None,
        };
        let ip = other.ips.iter().find(|o| {
            !self.ips.iter().any(|mine| {
                mine == "*"
                    || match (net(mine), net(o), IpPattern::parse(mine)) {
                        (Some((_, ml)), Some((oa, ol)), Ok(m)) => ol >= ml && m.matches(oa),
                        _ => false,
                    }
            })
        });
        if let Some(i) = ip {
            return Some(format!("ip:{i}"));
        }
        other
            .uris
            .iter()
            .find(|o| !self.uris.iter().any(|mine| mine == "*" || mine == *o))
            .map(|u| format!("uri:{u}"))
    }

    /// The patterns in their stored form (`dns:…`, `ip:…`, `uri:…`), in order of kind.
    pub fn to_strings(&self) -> Vec<String> {
        let tagged = |tag: &str, v: &[String]| {
            v.iter()
                .map(|p| format!("{tag}:{p}"))
                .collect::<Vec<String>>()
        };
        let mut out = tagged("dns", &self.dns);
        out.extend(tagged("ip", &self.ips));
        out.extend(tagged("uri", &self.uris));
        out
    }
}

/// What bounds one request beyond its profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameBounds {
    /// Whose patterns these are, for messages (`client `billing``).
    pub owner: String,
    /// The client's patterns; `None`: the profile alone bounds the names.
    pub patterns: Option<ClientPatterns>,
    /// DNS names (lowercase) and IP addresses never issued: the names of Castellan's own API.
    pub reserved: Vec<String>,
}

impl NameBounds {
    /// Checks names the profile already allowed (normalized by `Profile::check_names`).
    pub(super) fn check(&self, names: &Names) -> Result<(), PkiError> {
        self.check_reserved(names)?;
        let Some(p) = &self.patterns else {
            return Ok(());
        };
        let refused = |kind: SanKind, value: &str, allowed: &[String]| PkiError::NameNotAllowed {
            kind: kind.to_string(),
            value: value.to_owned(),
            owner: self.owner.clone(),
            allowed: if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            },
        };
        for d in &names.dns {
            if !p.dns.iter().any(|pat| dns_matches(pat, d)) {
                return Err(refused(SanKind::Dns, d, &p.dns));
            }
        }
        for ip in &names.ips {
            let ok = p
                .ips
                .iter()
                .any(|pat| IpPattern::parse(pat).is_ok_and(|pat| pat.matches(*ip)));
            if !ok {
                return Err(refused(SanKind::Ip, &ip.to_string(), &p.ips));
            }
        }
        for u in &names.uris {
            if !p.uris.iter().any(|pat| pat == "*" || uri_glob(pat, u)) {
                return Err(refused(SanKind::Uri, u, &p.uris));
            }
        }
        if let Some(cn) = &names.common_name {
            let lower = cn.to_ascii_lowercase();
            let is_san = names.dns.contains(&lower)
                || names.uris.contains(cn)
                || cn
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| names.ips.contains(&ip.to_canonical()));
            if !is_san && !p.dns.iter().any(|pat| dns_matches(pat, &lower)) {
                return Err(refused(
                    SanKind::Dns,
                    &format!("{cn} (as the common name)"),
                    &p.dns,
                ));
            }
        }
        Ok(())
    }

    fn check_reserved(&self, names: &Names) -> Result<(), PkiError> {
        let cn = names.common_name.as_deref().map(str::to_ascii_lowercase);
        for r in &self.reserved {
            let hit = match r.parse::<IpAddr>() {
                Ok(ip) => {
                    let ip = ip.to_canonical();
                    names.ips.contains(&ip)
                        || cn
                            .as_deref()
                            .and_then(|c| c.parse::<IpAddr>().ok())
                            .is_some_and(|c| c.to_canonical() == ip)
                }
                // A requested wildcard covering the name is as good as the name itself.
                Err(_) => {
                    names.dns.iter().any(|d| dns_matches(d, r)) || cn.as_deref() == Some(r.as_str())
                }
            };
            if hit {
                return Err(PkiError::ReservedName { value: r.clone() });
            }
        }
        Ok(())
    }
}
