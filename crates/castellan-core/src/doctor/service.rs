//! Judging a Castellan server or store from what the caller read of it: answers to `/healthz` and
//! `/readyz`, the published JWKS, the store's schema, key ring, CA, secrets and issued certificates.
//!
//! Like the rest of the doctor, nothing here opens a connection or reads the clock: the caller probes
//! (castellan's `probes` module does) and hands the results over, failures as text.

use std::collections::HashMap;

use super::token::{JwksDoc, check_jwks};
use super::{ChainRequest, DAY, Finding, Input, check_chain, codes};

/// What an HTTP endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// A 2xx status.
    pub success: bool,
    /// The status as shown, e.g. `503 Service Unavailable`.
    pub status: String,
}

/// The caller could not even start its HTTP client; `code` and `subject` say what was to be checked.
pub fn http_client_failed(code: &'static str, subject: &str, error: &str) -> Finding {
    Finding::error(
        code,
        subject,
        format!("cannot start an HTTP client: {error}"),
        "report this",
    )
}

/// Judges `GET {base}/healthz`; false when the server does not answer at all (nothing else can be
/// checked then).
pub fn check_healthz(
    base: &str,
    answer: &Result<HttpAnswer, String>,
    out: &mut Vec<Finding>,
) -> bool {
    match answer {
        Err(e) => {
            out.push(Finding::error(
                codes::SERVER_UNREACHABLE,
                base,
                format!("{base} does not answer: {e}"),
                "check that `castellan serve` runs and listens on that address (--listen)",
            ));
            return false;
        }
        Ok(r) if !r.success => out.push(Finding::error(
            codes::SERVER_UNREACHABLE,
            base,
            format!("{base}/healthz answers {}", r.status),
            "check that the URL points at a Castellan server",
        )),
        Ok(_) => {}
    }
    true
}

/// Judges `GET {base}/readyz`: a server that is not ready has not loaded its key ring.
pub fn check_readyz(base: &str, answer: &Result<HttpAnswer, String>) -> Option<Finding> {
    match answer {
        Ok(r) if r.success => None,
        Ok(r) => Some(Finding::error(
            codes::KEYRING_NOT_LOADED,
            base,
            format!(
                "{base}/readyz answers {}: the server has not loaded its key ring, so it cannot \
                 issue tokens",
                r.status
            ),
            "check the server's log; the store must have been initialized (castellan init) and \
             the master key must match",
        )),
        Err(e) => Some(Finding::error(
            codes::SERVER_UNREACHABLE,
            base,
            format!("{base}/readyz: {e}"),
            "check the server's log",
        )),
    }
}

/// The number of keys in a JWKS body (0 when it is not one).
fn key_count(doc: &JwksDoc) -> usize {
    doc.body
        .as_ref()
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v["keys"].as_array().map(|k| k.len()))
        .unwrap_or(0)
}

/// Judges the JWKS a server publishes: a sound document, and at least one key in it.
pub fn check_published_jwks(doc: &JwksDoc, now: i64) -> Vec<Finding> {
    let mut out = check_jwks(std::slice::from_ref(doc), None, now);
    if !out.is_empty() {
        return out;
    }
    let keys = key_count(doc);
    if keys == 0 {
        out.push(Finding::error(
            codes::KEYRING_NOT_LOADED,
            &doc.source,
            "the server publishes no keys: no token it issues can be verified",
            "run castellan init against its store and restart it",
        ));
    } else {
        out.push(Finding::info(
            codes::KEYRING_OK,
            &doc.source,
            format!("the server publishes {keys} key(s)"),
            "nothing to do",
        ));
    }
    out
}

/// There is no SQLite store at `subject`.
pub fn no_store(subject: &str) -> Finding {
    Finding::error(
        codes::STORE_NOT_INITIALIZED,
        subject,
        format!("there is no store at {subject}"),
        "run `castellan init --data-dir DIR` (or pass the --data-dir of the existing store)",
    )
}

/// What the caller was doing with the store when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStep {
    /// Opening it.
    Open,
    /// Reading its schema version.
    Schema,
    /// Pinging it once open.
    Ping,
    /// Listing the secrets.
    ListSecrets,
    /// Reading the active CA.
    ReadCa,
}

/// The store failed at `step` with `error`.
pub fn store_unreachable(subject: &str, step: StoreStep, error: &str) -> Finding {
    let (message, fix) = match step {
        StoreStep::Open => (
            format!("cannot open the store: {error}"),
            "check --database-url / --data-dir, that the database runs, and its credentials",
        ),
        StoreStep::Schema => (
            format!("cannot read the store's schema: {error}"),
            "check the database and its credentials",
        ),
        StoreStep::Ping => (
            format!("the store does not answer: {error}"),
            "check the database",
        ),
        StoreStep::ListSecrets => (
            format!("cannot list the secrets: {error}"),
            "check the database",
        ),
        StoreStep::ReadCa => (format!("cannot read the CA: {error}"), "check the database"),
    };
    Finding::error(codes::STORE_UNREACHABLE, subject, message, fix)
}

/// The store's schema against the migrations of the binary (of `version`) that judges it.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFacts<'a> {
    /// The versions applied to the database; empty when it holds no Castellan schema.
    pub applied: &'a [i64],
    /// Versions the binary carries that the database lacks.
    pub missing: &'a [i64],
    /// Versions in the database the binary does not know.
    pub unknown: &'a [i64],
}

/// Judges the store's schema; false when the other store checks cannot run on it (no schema, or one
/// the binary's queries would fail on: migrations missing).
pub fn check_schema(
    subject: &str,
    schema: &SchemaFacts<'_>,
    version: &str,
    out: &mut Vec<Finding>,
) -> bool {
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    if schema.applied.is_empty() {
        out.push(Finding::error(
            codes::STORE_NOT_INITIALIZED,
            subject,
            "the database holds no Castellan schema: it was never initialized",
            "run `castellan init` against it",
        ));
        return false;
    }
    if !schema.unknown.is_empty() {
        out.push(Finding::warning(
            codes::STORE_SCHEMA_NEWER,
            subject,
            format!(
                "a newer Castellan migrated this store (schema version(s) {} are unknown to this binary, \
                 version {version})",
                list(schema.unknown),
            ),
            "run the doctor (and the servers) of the version that migrated it",
        ));
    }
    if !schema.missing.is_empty() {
        out.push(Finding::warning(
            codes::STORE_SCHEMA_BEHIND,
            subject,
            format!(
                "the store's schema lacks migration(s) {} of this binary (version {version}); the doctor changes \
                 nothing, so its other store checks were skipped",
                list(schema.missing),
            ),
            "start `castellan serve` of this version against the store (it applies them), or keep to the \
             version that serves it now",
        ));
        return false;
    }
    true
}

/// The store was never initialized: it holds no key ring.
pub fn not_initialized(subject: &str) -> Finding {
    Finding::error(
        codes::STORE_NOT_INITIALIZED,
        subject,
        "the store has never been initialized: it holds no key ring",
        "run `castellan init` against it",
    )
}

/// What became of loading the store's key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRingFacts {
    /// No master key to load it with: why.
    NoMasterKey(String),
    /// It loads: how many keys it publishes, and the kid it signs with (`None` when none signs now).
    Loaded {
        /// Published keys.
        keys: usize,
        /// The current signing key.
        current: Option<String>,
    },
    /// It does not load: why.
    Failed(String),
}

/// Judges the key ring.
pub fn check_key_ring(subject: &str, ring: &KeyRingFacts) -> Finding {
    match ring {
        KeyRingFacts::NoMasterKey(e) => Finding::error(
            codes::KEYRING_NOT_LOADED,
            subject,
            format!("the key ring cannot be loaded without the master key: {e}"),
            "pass --master-key-file (the file every replica of this store is given)",
        ),
        KeyRingFacts::Loaded { keys, current } => Finding::info(
            codes::KEYRING_OK,
            subject,
            format!(
                "the key ring loads: {keys} published key(s), signing with `{}`",
                current.as_deref().unwrap_or("(none)")
            ),
            "nothing to do",
        ),
        KeyRingFacts::Failed(e) => Finding::error(
            codes::KEYRING_NOT_LOADED,
            subject,
            format!("the key ring cannot be loaded: {e}"),
            "check that the master key is the one the store was initialized with",
        ),
    }
}

/// The store's active CA, as stored.
#[derive(Debug, Clone, Copy)]
pub struct StoreCa<'a> {
    /// The issuing CA certificate, PEM.
    pub ca_cert_pem: &'a str,
    /// CA certificates between it and the root, PEM (may be empty).
    pub intermediates_pem: &'a str,
    /// The root, PEM.
    pub root_pem: &'a str,
}

/// How long before its end the issuing CA certificate is reported: leaves cannot outlive it, so a new
/// intermediate needs planning.
pub const CA_EXPIRY_WARNING: i64 = 90 * DAY;

/// Judges the store's CA: there is one, its chain is sound, and it is not near its end.
pub fn check_store_ca(subject: &str, ca: Option<&StoreCa<'_>>, now: i64) -> Vec<Finding> {
    let Some(ca) = ca else {
        return vec![Finding::warning(
            codes::CA_MISSING,
            subject,
            "the store has no CA, so it cannot issue certificates",
            "run `castellan init` (newer versions create the CA) or castellan pki import-ca",
        )];
    };
    let presented = format!("{}{}", ca.ca_cert_pem, ca.intermediates_pem);
    let req = ChainRequest {
        cert: Input::new(
            "store CA (issuing CA + intermediates)",
            presented.as_bytes(),
        ),
        key: None,
        ca: Some(Input::new("store root", ca.root_pem.as_bytes())),
        host: None,
        purpose: None,
        now,
    };
    let mut out = check_chain(&req);
    if let Ok(info) = crate::pki::parse_cert_pem(ca.ca_cert_pem) {
        out.extend(ca_expiry(info.not_after, now));
    }
    out
}

/// The issuing CA certificate (ending at `not_after`) expires within [`CA_EXPIRY_WARNING`]; an expired
/// one is left to the chain check.
pub fn ca_expiry(not_after: i64, now: i64) -> Option<Finding> {
    let left = not_after - now;
    (left > 0 && left < CA_EXPIRY_WARNING).then(|| {
        Finding::warning(
            codes::CERTIFICATE_EXPIRING,
            "store CA",
            format!(
                "the issuing CA certificate expires in {} days; leaves cannot outlive it",
                left / DAY
            ),
            "plan a new intermediate (castellan pki import-ca) before it expires",
        )
    })
}

/// A stored secret whose newest version does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFailure {
    /// The secret's name.
    pub name: String,
    /// Its newest version.
    pub version: i64,
    /// Why it does not open.
    pub error: String,
}

/// Judges the stored secrets: each that does not open is named (never its value); a summary when all
/// `count` open.
pub fn check_secrets(subject: &str, count: usize, failures: &[SecretFailure]) -> Vec<Finding> {
    let mut out: Vec<Finding> = failures
        .iter()
        .map(|f| {
            Finding::error(
                codes::SECRET_UNREADABLE,
                format!("secret {}", f.name),
                format!("version {} does not open: {}", f.version, f.error),
                "write it again (castellan secret put) from its source; if many fail, check the master key and the data_keys table",
            )
        })
        .collect();
    if failures.is_empty() && count > 0 {
        out.push(Finding::info(
            codes::SECRETS_OK,
            subject,
            format!("{count} secret(s); the newest version of each opens"),
            "nothing to do",
        ));
    }
    out
}

/// How long before its end a certificate counts as expiring: the last third of its lifetime (an agent
/// renews at two thirds), at most 14 days. Callers need only read certificates ending before
/// `now + EXPIRING_WITHIN`.
pub const EXPIRING_WITHIN: i64 = 14 * DAY;

/// At most this many unrenewed certificates are reported.
pub const UNRENEWED_SHOWN: usize = 20;

/// An issued certificate, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// Serial, hex.
    pub serial: String,
    /// Profile name.
    pub profile: String,
    /// Subject CN.
    pub common_name: Option<String>,
    /// SANs as space-separated text.
    pub sans: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// It was revoked.
    pub revoked: bool,
}

/// The names a certificate is issued for: (profile, common name, SANs).
pub type CertNames = (String, Option<String>, String);

impl IssuedCert {
    /// The names it was issued for, the key of [`check_unrenewed`]'s `newest`.
    pub fn names(&self) -> CertNames {
        (
            self.profile.clone(),
            self.common_name.clone(),
            self.sans.clone(),
        )
    }
}

/// The renewal rule: `c` is in the last third of its lifetime (at most [`EXPIRING_WITHIN`] before its
/// end), not yet expired, not revoked, and no certificate issued for the same names ends later
/// (`newest_not_after`, the latest notAfter of any certificate for those names): a renewal that did not
/// happen. A certificate the agent has replaced is not one, however near its end.
pub fn renewal_missed(c: &IssuedCert, newest_not_after: Option<i64>, now: i64) -> bool {
    let last_third = (c.not_after - c.not_before) / 3;
    !c.revoked
        && c.not_after > now
        && c.not_after - now < last_third.min(EXPIRING_WITHIN)
        && newest_not_after.is_none_or(|n| n <= c.not_after)
}

/// Judges issued certificates: a warning for each (at most [`UNRENEWED_SHOWN`]) whose renewal was
/// missed; `newest` maps names to the latest notAfter issued for them.
pub fn check_unrenewed(
    certs: &[IssuedCert],
    newest: &HashMap<CertNames, i64>,
    now: i64,
) -> Vec<Finding> {
    certs
        .iter()
        .filter(|c| renewal_missed(c, newest.get(&c.names()).copied(), now))
        .take(UNRENEWED_SHOWN)
        .map(|c| {
            Finding::warning(
                codes::CERTIFICATE_EXPIRING,
                format!("serial {}", c.serial),
                format!(
                    "the certificate for `{}` (profile {}) expires in {} hours, past the point where it \
                     should have been renewed, and no newer certificate was issued for the same names",
                    c.common_name.as_deref().unwrap_or(&c.sans),
                    c.profile,
                    (c.not_after - now) / 3600
                ),
                "renew it (castellan pki issue), or check the agent that should renew it (castellan \
                 agent status file and logs)",
            )
        })
        .collect()
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
