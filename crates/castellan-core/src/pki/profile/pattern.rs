//! Name checks and pattern matching for profiles: requested DNS names, URIs and common names are
//! validated, and names are matched against a profile's patterns (their syntax is described in the
//! documentation of the profile module).

use std::net::IpAddr;

use rustls_pki_types::DnsName;

use super::MAX_CN_LEN;
use crate::pki::PkiError;

/// Validates and lowercases a requested DNS name. A wildcard is allowed only as the whole leftmost
/// label, followed by at least two labels.
pub(super) fn normalize_dns(name: &str) -> Result<String, PkiError> {
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

pub(super) fn check_dns_pattern(p: &str) -> Result<(), String> {
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
pub(super) fn dns_matches(pattern: &str, name: &str) -> bool {
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

pub(super) enum IpPattern {
    Any,
    Net(IpAddr, u8),
}

impl IpPattern {
    pub(super) fn parse(p: &str) -> Result<Self, String> {
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

    pub(super) fn matches(&self, ip: IpAddr) -> bool {
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
pub(super) fn glob(pattern: &str, value: &str) -> bool {
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

/// A URI glob: `*` matches a run of at least one character within one path segment (it never matches
/// `/`, and `…/prod/*` never matches the empty segment of `…/prod/`), `**` any run at all; everything else is literal. URI SANs reaching it have passed [`check_uri`], so
/// no dot-segment, percent-escape, query or fragment can make a name look inside a prefix it is not.
pub(super) fn uri_glob(pattern: &str, value: &str) -> bool {
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
                // At least one byte: the previous token's match extended by one, or this star's.
                Tok::Star => j > 0 && v[j - 1] != b'/' && (m[j - 1] || next[j - 1]),
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
pub(super) fn check_uri(uri: &str) -> Result<(), PkiError> {
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
    // `a//b` and `a/b/` name the same thing as `a/b` to a verifier that normalizes, and an empty
    // segment is what a one-segment glob (`…/prod/*`) must never stand for.
    let segments = path.strip_prefix('/').unwrap_or(path);
    if !segments.is_empty() && segments.split('/').any(str::is_empty) {
        return Err(invalid(
            "empty path segments (`//`, or a `/` at the end) are not allowed",
        ));
    }
    Ok(())
}

pub(super) fn check_cn(cn: &str) -> Result<(), PkiError> {
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

    /// Issue 21 item 7: a one-segment URI glob needs at least one character, and URI SANs with an
    /// empty path segment are refused before any pattern sees them.
    #[test]
    fn a_uri_glob_segment_is_never_empty() {
        let p = "spiffe://c.local/ns/prod/*";
        assert!(uri_glob(p, "spiffe://c.local/ns/prod/web"));
        assert!(!uri_glob(p, "spiffe://c.local/ns/prod/"));
        assert!(!uri_glob(p, "spiffe://c.local/ns/prod/a/b"));
        assert!(uri_glob("spiffe://c.local/sa-*", "spiffe://c.local/sa-x"));
        assert!(!uri_glob("spiffe://c.local/sa-*", "spiffe://c.local/sa-"));
        assert!(uri_glob("spiffe://c.local/**", "spiffe://c.local/a/b"));
        for bad in [
            "spiffe://c.local/ns/prod/",
            "spiffe://c.local/ns//prod",
            "spiffe://c.local//x",
            "urn:a/b/",
        ] {
            assert!(check_uri(bad).is_err(), "{bad} is refused");
        }
        for good in [
            "spiffe://c.local/ns/prod/web",
            "https://h.example/",
            "spiffe://c.local",
            "urn:uuid:1",
        ] {
            assert!(check_uri(good).is_ok(), "{good} is accepted");
        }
    }
}
