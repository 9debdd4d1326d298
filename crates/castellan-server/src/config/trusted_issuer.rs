//! `[[trusted_issuer]]`: workloads that sign in with a token another issuer signed (a Kubernetes
//! service-account token, RFC 7523 client assertion). Each entry names the issuer, where its keys come
//! from, the subject pattern and audience it accepts, and the Castellan client and scopes such a token
//! becomes. Several entries may share one issuer (one per namespace, say); they must then name the same
//! key source. Entries are tried in file order; the first that matches decides.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Signature algorithms a trusted issuer may use by default (what Kubernetes signs with).
pub const DEFAULT_ALGORITHMS: [&str; 2] = ["RS256", "ES256"];
/// Asymmetric algorithms an entry may allow; `none` and the HMAC ones never (a shared secret would let
/// anyone holding the JWKS sign).
pub const ALLOWED_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One `[[trusted_issuer]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// The `iss` the tokens carry, e.g. `https://kubernetes.default.svc.cluster.local`.
    pub issuer: String,
    /// Find the keys through `{issuer}/.well-known/openid-configuration` (its `jwks_uri`).
    #[serde(default)]
    pub discovery: bool,
    /// The issuer's JWKS at this URL.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The issuer's JWKS in this file (e.g. `kubectl get --raw /openid/v1/jwks` kept in a ConfigMap).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// PEM certificates trusted, alone, for the discovery and JWKS URLs (the cluster's CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A bearer token file sent with discovery and JWKS requests (the pod's own service-account
    /// token, which the API server's default `system:service-account-issuer-discovery` role admits);
    /// read again for every request.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// The `aud` a token must hold (the `audience` of the projected token volume).
    pub audience: String,
    /// `sub` pattern, `*` matching any run of characters: `system:serviceaccount:payments:*`.
    pub subject: String,
    /// Optional pattern for the pod name of `kubernetes.io.pod.name`; a token without one does not match.
    #[serde(default)]
    pub pod: Option<String>,
    /// The client id Castellan's token names (`sub` and `client_id`); `{namespace}`,
    /// `{serviceaccount}` and `{pod}` are replaced from the token's `kubernetes.io` claims.
    pub client_id: String,
    /// The scopes the client holds.
    pub scopes: Vec<String>,
    /// The `aud` of Castellan's token; the issuer (public URL) when absent.
    #[serde(default)]
    pub token_audience: Option<String>,
    /// Lifetime of Castellan's token (at most `tokens.max_ttl`); `tokens.default_ttl` when absent.
    #[serde(default, deserialize_with = "opt_duration")]
    pub token_ttl: Option<Duration>,
    /// Signature algorithms accepted; default RS256 and ES256.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    super::parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl TrustedIssuerConfig {
    /// The algorithms accepted.
    pub fn algorithms(&self) -> Vec<String> {
        self.algorithms
            .clone()
            .unwrap_or_else(|| DEFAULT_ALGORITHMS.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Where the keys come from, as one comparable value.
    pub fn key_source(&self) -> (bool, Option<&str>, Option<&std::path::Path>) {
        (
            self.discovery,
            self.jwks_url.as_deref(),
            self.jwks_file.as_deref(),
        )
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid {
        field: "trusted_issuer",
        message,
    }
}

fn http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > 8
        && !s.contains(char::is_whitespace)
}

/// Checks every entry, and that entries sharing an issuer share its key source and algorithms.
pub fn validate(entries: &[TrustedIssuerConfig], max_ttl: Duration) -> Result<(), ConfigError> {
    for (i, e) in entries.iter().enumerate() {
        let at = |m: &str| invalid(format!("entry {} (`{}`): {m}", i + 1, e.issuer));
        if !http_url(&e.issuer) {
            return Err(at("issuer must be an http(s) URL"));
        }
        let sources = usize::from(e.discovery)
            + usize::from(e.jwks_url.is_some())
            + usize::from(e.jwks_file.is_some());
        if sources != 1 {
            return Err(at(
                "give exactly one of discovery = true, jwks_url, jwks_file",
            ));
        }
        if let Some(u) = &e.jwks_url
            && !http_url(u)
        {
            return Err(at("jwks_url must be an http(s) URL"));
        }
        if e.audience.is_empty() || e.audience.chars().any(char::is_whitespace) {
            return Err(at("audience must be non-empty, without spaces"));
        }
        if e.subject.is_empty() {
            return Err(at("subject must not be empty (use `*` for any)"));
        }
        if e.client_id.is_empty()
            || e.client_id.len() > 128
            || e.client_id
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '*')
        {
            return Err(at(
                "client_id must be 1-128 characters without spaces, control characters or `*`",
            ));
        }
        if e.client_id.starts_with("cl_") {
            return Err(at(
                "client_id may not start with `cl_`, the prefix of the store's client ids",
            ));
        }
        if e.scopes.is_empty() {
            return Err(at("scopes must name at least one scope"));
        }
        if let Some(bad) = e
            .scopes
            .iter()
            .find(|s| !castellan_core::token::valid_scope_token(s))
        {
            return Err(at(&format!("`{bad}` is not a valid scope")));
        }
        if let Some(ttl) = e.token_ttl
            && (ttl.is_zero() || ttl > max_ttl)
        {
            return Err(at(
                "token_ttl must be more than zero and at most tokens.max_ttl",
            ));
        }
        let algs = e.algorithms();
        if let Err(m) = check_algorithms(&algs) {
            return Err(at(&m));
        }
        if let Some(first) = entries[..i].iter().find(|o| o.issuer == e.issuer)
            && (first.key_source() != e.key_source()
                || first.ca_file != e.ca_file
                || first.bearer_token_file != e.bearer_token_file
                || first.algorithms() != algs)
        {
            return Err(at(
                "entries for one issuer must give the same key source, ca_file, bearer_token_file and algorithms",
            ));
        }
    }
    Ok(())
}

/// An `algorithms` list of a trusted issuer or an identity provider: not empty, and only algorithms
/// of [`ALLOWED_ALGORITHMS`].
pub(super) fn check_algorithms(algs: &[String]) -> Result<(), String> {
    if algs.is_empty() {
        return Err("algorithms must name at least one algorithm".into());
    }
    match algs
        .iter()
        .find(|a| !ALLOWED_ALGORITHMS.contains(&a.as_str()))
    {
        Some(bad) => Err(format!(
            "algorithm `{bad}` is not accepted (only {})",
            ALLOWED_ALGORITHMS.join(", ")
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_algorithm_list_is_not_empty_and_holds_only_allowed_ones() {
        assert!(check_algorithms(&[]).is_err_and(|m| m.contains("at least one")));
        assert!(
            check_algorithms(&["RS256".into(), "none".into()])
                .is_err_and(|m| m.contains("`none` is not accepted"))
        );
        assert_eq!(check_algorithms(&["RS256".into(), "ES256".into()]), Ok(()));
    }

    fn parse(text: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::Config::from_toml("t.toml", text)
    }

    const ENTRY: &str = r#"
[[trusted_issuer]]
issuer = "https://kubernetes.default.svc"
jwks_file = "jwks.json"
audience = "castellan"
subject = "system:serviceaccount:payments:*"
client_id = "k8s:{namespace}:{serviceaccount}"
scopes = ["secrets:read:payments"]
token_ttl = "10m"
"#;

    #[test]
    fn an_entry_parses() {
        let cfg = parse(ENTRY).expect("valid");
        let e = &cfg.trusted_issuer[0];
        assert_eq!(e.audience, "castellan");
        assert_eq!(e.token_ttl, Some(Duration::from_secs(600)));
        assert_eq!(e.algorithms(), vec!["RS256", "ES256"]);
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        for (from, to, says) in [
            ("jwks_file = \"jwks.json\"", "", "exactly one of"),
            (
                "jwks_file = \"jwks.json\"",
                "jwks_file = \"j\"\ndiscovery = true",
                "exactly one of",
            ),
            ("token_ttl = \"10m\"", "algorithms = [\"HS256\"]", "HS256"),
            ("token_ttl = \"10m\"", "algorithms = [\"none\"]", "none"),
            ("token_ttl = \"10m\"", "token_ttl = \"1000h\"", "max_ttl"),
            ("audience = \"castellan\"", "audience = \"\"", "audience"),
            ("[\"secrets:read:payments\"]", "[]", "scopes"),
            ("[\"secrets:read:payments\"]", "[\"a b\"]", "valid scope"),
            (
                "\"https://kubernetes.default.svc\"",
                "\"kubernetes\"",
                "http(s)",
            ),
            ("\"k8s:{namespace}:{serviceaccount}\"", "\"cl_x\"", "cl_"),
            ("\"k8s:{namespace}:{serviceaccount}\"", "\"k8s:*\"", "`*`"),
        ] {
            let text = ENTRY.replace(from, to);
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(says), "{to}: {err}");
        }
        let two = format!("{ENTRY}{}", ENTRY.replace("jwks.json", "other.json"));
        assert!(
            parse(&two)
                .expect_err("two sources")
                .to_string()
                .contains("same key source")
        );
        let unknown = ENTRY.replace("token_ttl", "tokn_ttl");
        assert!(parse(&unknown).is_err());
    }
}
