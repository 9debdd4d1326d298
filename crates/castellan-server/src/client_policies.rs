//! Client token policies (issue 18): checking one before it is stored, setting it, showing it.
//!
//! A policy bounds what a client's tokens may be for: the audiences it may ask for besides its
//! default one, the signing API (maximum lifetime, extra claim names, `sub` pattern, `typ`) and the
//! tokens it may exchange (RFC 8693).

use castellan_store::{ClientPolicy, Store};
pub use castellan_wire::sign::ClientPolicySpec;

use crate::error::ServiceError;

/// Claims the signing API never takes from a caller: RFC 7519's registered claims, which Castellan
/// sets, and those that would make a signed token read as one of Castellan's own access tokens or
/// an exchanged one (`scope`, `client_id`, `act`, `sid`, `cnf`).
pub const RESERVED_CLAIMS: [&str; 12] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "act",
    "sid",
    "cnf",
];

/// The `typ` values the signing API signs.
pub const SIGN_TYPES: [&str; 2] = ["at+jwt", "JWT"];

/// An audience: 1-512 characters without spaces.
pub fn valid_audience(a: &str) -> bool {
    !a.is_empty() && a.len() <= 512 && !a.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A claim name: 1-64 letters, digits, `-`, `_`, `.` or `:`.
pub fn valid_claim_name(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Checks a policy and turns it into its stored form; `max_ttl_secs` is `tokens.max_ttl`.
pub fn check(spec: &ClientPolicySpec, max_ttl_secs: i64) -> Result<ClientPolicy, ServiceError> {
    let invalid = |m: String| Err(ServiceError::Invalid(m));
    for a in spec.audiences.iter().chain(&spec.exchange_from) {
        if !valid_audience(a) {
            return invalid(format!(
                "`{}` is not an audience (1-512 characters without spaces)",
                a.escape_debug()
            ));
        }
    }
    if spec.audiences.len() > 64 || spec.exchange_from.len() > 64 {
        return invalid("at most 64 audiences".into());
    }
    if let Some(ttl) = spec.sign_max_ttl_secs
        && !(1..=max_ttl_secs).contains(&ttl)
    {
        return invalid(format!(
            "the signing lifetime {ttl}s is outside 1s..{max_ttl_secs}s (tokens.max_ttl)"
        ));
    }
    for c in &spec.sign_claims {
        if !valid_claim_name(c) {
            return invalid(format!("`{}` is not a claim name", c.escape_debug()));
        }
        if RESERVED_CLAIMS.contains(&c.as_str()) {
            return invalid(format!(
                "`{c}` is set by Castellan and cannot be allowed (registered claims: {})",
                RESERVED_CLAIMS.join(" ")
            ));
        }
    }
    if let Some(sub) = &spec.sign_sub
        && (sub.is_empty()
            || sub.len() > 256
            || sub.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return invalid("the sub pattern must be 1-256 characters without spaces".into());
    }
    let typ = spec.sign_typ.as_deref().unwrap_or("at+jwt");
    if !SIGN_TYPES.contains(&typ) {
        return invalid(format!(
            "typ must be at+jwt or JWT, not `{}`",
            typ.escape_debug()
        ));
    }
    let words = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v.join(" ")
    };
    Ok(ClientPolicy {
        audiences: words(&spec.audiences),
        sign_max_ttl_secs: spec.sign_max_ttl_secs.unwrap_or(0),
        sign_claims: words(&spec.sign_claims),
        sign_sub: spec.sign_sub.clone().unwrap_or_default(),
        sign_typ: typ.to_owned(),
        exchange_from: words(&spec.exchange_from),
    })
}

/// The stored policy as shown.
pub fn spec_of(p: &ClientPolicy) -> ClientPolicySpec {
    let list = |s: &str| {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    ClientPolicySpec {
        audiences: list(&p.audiences),
        sign_max_ttl_secs: (p.sign_max_ttl_secs > 0).then_some(p.sign_max_ttl_secs),
        sign_claims: list(&p.sign_claims),
        sign_sub: (!p.sign_sub.is_empty()).then(|| p.sign_sub.clone()),
        sign_typ: Some(p.sign_typ.clone()),
        exchange_from: list(&p.exchange_from),
    }
}

/// Sets the policy of the client with this id or name (`None` removes it); returns it as stored.
pub async fn set_policy(
    store: &Store,
    id_or_name: &str,
    spec: Option<&ClientPolicySpec>,
    max_ttl_secs: i64,
) -> Result<Option<ClientPolicySpec>, ServiceError> {
    let policy = spec.map(|s| check(s, max_ttl_secs)).transpose()?;
    let not_found = || ServiceError::NotFound(format!("client `{id_or_name}`"));
    let row = store
        .client_by_id_or_name(id_or_name)
        .await?
        .ok_or_else(not_found)?;
    if !store
        .set_client_policy(&row.client_id, policy.as_ref())
        .await?
    {
        return Err(not_found());
    }
    Ok(policy.as_ref().map(spec_of))
}

/// Whether `s` matches `pattern`, where `*` stands for any run of characters (none included).
pub fn matches(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_patterns_match_whole_values() {
        for (p, s, want) in [
            ("user:*", "user:42", true),
            ("user:*", "user:", true),
            ("user:*", "admin:1", false),
            ("user:*", "xuser:1", false),
            ("*@example.com", "a@example.com", true),
            ("*@example.com", "a@example.com.evil", false),
            ("svc-*-prod", "svc-api-prod", true),
            ("svc-*-prod", "svc-api-dev", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*", "anything", true),
        ] {
            assert_eq!(matches(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn tokens_sign_is_given_only_by_a_holder() {
        use crate::clients::may_grant;
        assert!(!may_grant("clients:admin", "tokens:sign"));
        assert!(may_grant("clients:admin tokens:sign", "tokens:sign"));
        assert!(may_grant("admin", "tokens:sign"));
        assert!(may_grant("clients:admin", "tokens:introspect"), "unchanged");
    }

    #[test]
    fn a_policy_cannot_allow_a_registered_claim_or_a_bad_typ() {
        let ok = ClientPolicySpec {
            audiences: vec!["https://api".into()],
            sign_claims: vec!["roles".into()],
            ..Default::default()
        };
        assert!(check(&ok, 3600).is_ok());
        for c in RESERVED_CLAIMS {
            let bad = ClientPolicySpec {
                sign_claims: vec![c.into()],
                ..ok.clone()
            };
            assert!(check(&bad, 3600).is_err(), "{c}");
        }
        let typ = ClientPolicySpec {
            sign_typ: Some("id+jwt".into()),
            ..ok.clone()
        };
        assert!(check(&typ, 3600).is_err());
        let long = ClientPolicySpec {
            sign_max_ttl_secs: Some(7200),
            ..ok
        };
        assert!(check(&long, 3600).is_err(), "never above tokens.max_ttl");
    }
}
