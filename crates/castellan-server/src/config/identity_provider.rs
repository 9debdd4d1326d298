//! `[[identity_provider]]`: upstream OpenID Connect providers people may sign in through ("Continue
//! with <name>" on the login page). Each entry names the provider's issuer (its endpoints and keys
//! come from discovery), Castellan's client registration there, the claims that become the user's
//! name, e-mail and groups, who may sign in (e-mail domains or subjects), and whether a first
//! sign-in creates the user or needs one an administrator created.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::trusted_issuer::check_algorithms;

/// Algorithms an upstream ID token may be signed with by default.
pub const DEFAULT_ALGORITHMS: [&str; 2] = ["RS256", "ES256"];

/// What a first sign-in does for a subject no user is linked to yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstSignin {
    /// Create the user (named by the name claim) and link the subject to it.
    Create,
    /// Link the subject to the user an administrator created with that name; refuse when there is
    /// none.
    Existing,
}

/// Which upstream claims become the user's name, e-mail and groups.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    /// The claim whose value is the user's name here (default `preferred_username`).
    pub name: String,
    /// The claim holding the e-mail address (default `email`).
    pub email: String,
    /// The claim holding the groups (a list of strings); none when unset.
    pub groups: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            name: "preferred_username".into(),
            email: "email".into(),
            groups: None,
        }
    }
}

/// One `[[identity_provider]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderConfig {
    /// Short name in URLs and the store's links (`[a-z0-9-]`, 1-32); changing it unlinks everyone.
    pub name: String,
    /// Shown on the login page: "Continue with <display_name>" (default: `name`).
    #[serde(default)]
    pub display_name: Option<String>,
    /// The provider's issuer; `{issuer}/.well-known/openid-configuration` is read for its endpoints.
    pub issuer: String,
    /// Castellan's client id at the provider (the `aud` its ID tokens carry).
    pub client_id: String,
    /// File holding Castellan's client secret at the provider (read at start-up, never logged).
    pub client_secret_file: PathBuf,
    /// Scopes asked for (default `openid email profile`; `openid` is always sent).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Claim mapping.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// E-mail domains allowed to sign in (the `email` claim, which must be verified).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Upstream subjects (`sub`) allowed to sign in.
    #[serde(default)]
    pub allowed_subjects: Vec<String>,
    /// `create` or `existing` (default): what a first sign-in does.
    #[serde(default = "default_first_signin")]
    pub first_signin: FirstSignin,
    /// PEM certificates trusted, alone, for the provider's HTTPS (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Signature algorithms accepted; default RS256 and ES256.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn default_first_signin() -> FirstSignin {
    FirstSignin::Existing
}

impl IdentityProviderConfig {
    /// The algorithms accepted.
    pub fn algorithms(&self) -> Vec<String> {
        self.algorithms
            .clone()
            .unwrap_or_else(|| DEFAULT_ALGORITHMS.iter().map(|s| (*s).to_owned()).collect())
    }

    /// The name shown on the login page.
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid {
        field: "identity_provider",
        message,
    }
}

fn claim_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Checks every entry, and that names are unique.
pub fn validate(entries: &[IdentityProviderConfig]) -> Result<(), ConfigError> {
    for (i, e) in entries.iter().enumerate() {
        let at = |m: &str| invalid(format!("entry {} (`{}`): {m}", i + 1, e.name));
        if e.name.is_empty()
            || e.name.len() > 32
            || !e
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(at("name must be 1-32 characters of a-z, 0-9 and `-`"));
        }
        if entries[..i].iter().any(|o| o.name == e.name) {
            return Err(at("two entries have this name"));
        }
        if let Some(d) = &e.display_name
            && (d.trim().is_empty() || d.len() > 64 || d.chars().any(char::is_control))
        {
            return Err(at("display_name must be 1-64 printable characters"));
        }
        let https = e.issuer.starts_with("https://");
        let local_http = e.issuer.starts_with("http://127.0.0.1")
            || e.issuer.starts_with("http://localhost")
            || e.issuer.starts_with("http://[::1]");
        if !(https || local_http) || e.issuer.len() < 10 || e.issuer.contains(char::is_whitespace) {
            return Err(at(
                "issuer must be an https URL (http only for localhost, in tests)",
            ));
        }
        if e.client_id.is_empty()
            || e.client_id.len() > 256
            || e.client_id.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(at("client_id must be 1-256 characters without spaces"));
        }
        if let Some(bad) = e
            .scopes
            .iter()
            .find(|s| !castellan_core::token::valid_scope_token(s))
        {
            return Err(at(&format!("`{bad}` is not a valid scope")));
        }
        let c = &e.claims;
        for (what, v) in [
            ("claims.name", Some(&c.name)),
            ("claims.email", Some(&c.email)),
        ]
        .into_iter()
        .chain([("claims.groups", c.groups.as_ref())])
        {
            if let Some(v) = v
                && !claim_name(v)
            {
                return Err(at(&format!("{what} is not a claim name")));
            }
        }
        if e.allowed_email_domains.is_empty() && e.allowed_subjects.is_empty() {
            return Err(at(
                "give allowed_email_domains or allowed_subjects (who may sign in through it)",
            ));
        }
        if let Some(bad) = e.allowed_email_domains.iter().find(|d| {
            d.is_empty()
                || d.starts_with('@')
                || d.contains(char::is_whitespace)
                || d.bytes().any(|b| b.is_ascii_uppercase())
        }) {
            return Err(at(&format!(
                "allowed_email_domains: `{}` is not a lowercase domain (without `@`)",
                bad.escape_debug()
            )));
        }
        if e.allowed_subjects.iter().any(String::is_empty) {
            return Err(at("allowed_subjects may not hold an empty subject"));
        }
        let algs = e.algorithms();
        if let Err(m) = check_algorithms(&algs) {
            return Err(at(&m));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::Config::from_toml("t.toml", text)
    }

    const ENTRY: &str = r#"
[[identity_provider]]
name = "corp"
display_name = "Corp SSO"
issuer = "https://sso.corp.example"
client_id = "castellan"
client_secret_file = "/etc/castellan/corp-secret"
allowed_email_domains = ["corp.example"]
first_signin = "create"
[identity_provider.claims]
groups = "groups"
"#;

    #[test]
    fn an_entry_parses_with_its_defaults() {
        let cfg = parse(ENTRY).expect("valid");
        let e = &cfg.identity_provider[0];
        assert_eq!(e.display_name(), "Corp SSO");
        assert_eq!(e.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(e.claims.name, "preferred_username");
        assert_eq!(e.claims.groups.as_deref(), Some("groups"));
        assert_eq!(e.first_signin, FirstSignin::Create);
        assert_eq!(e.algorithms(), vec!["RS256", "ES256"]);
        let plain = parse(&ENTRY.replace("first_signin = \"create\"", "")).expect("valid");
        assert_eq!(
            plain.identity_provider[0].first_signin,
            FirstSignin::Existing
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        for (from, to, says) in [
            ("name = \"corp\"", "name = \"Corp\"", "a-z"),
            (
                "\"https://sso.corp.example\"",
                "\"http://sso.corp.example\"",
                "https",
            ),
            (
                "allowed_email_domains = [\"corp.example\"]",
                "",
                "allowed_email_domains or allowed_subjects",
            ),
            ("[\"corp.example\"]", "[\"@corp.example\"]", "without `@`"),
            ("groups = \"groups\"", "groups = \"a b\"", "claims.groups"),
            (
                "first_signin = \"create\"",
                "algorithms = [\"HS256\"]",
                "HS256",
            ),
            ("client_id = \"castellan\"", "client_id = \"\"", "client_id"),
        ] {
            let text = ENTRY.replace(from, to);
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(says), "{to}: {err}");
        }
        let two = format!("{ENTRY}{ENTRY}");
        assert!(
            parse(&two)
                .expect_err("twice")
                .to_string()
                .contains("two entries")
        );
        assert!(parse(&ENTRY.replace("first_signin", "first_sign_in")).is_err());
        assert!(
            parse(&ENTRY.replace("first_signin = \"create\"", "first_signin = \"maybe\"")).is_err()
        );
        assert!(parse(&ENTRY.replace("groups = ", "group = ")).is_err());
    }
}
