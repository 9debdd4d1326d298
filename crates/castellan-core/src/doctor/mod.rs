//! The doctor's checks: bytes and a clock in, findings out.
//!
//! Each check takes what the caller read (file contents, a chain a server presented, file metadata, JWKS
//! documents, a token) plus `now`, and returns [`Finding`]s: a stable kebab-case [`code`](codes), a
//! [`Severity`], the subject it is about (a file, `host:port`, a kid, a URL), one line in plain words and
//! a fix. Where a finding corresponds to a well-known error string (OpenSSL's `unable to get local issuer
//! certificate`, Python's `CERTIFICATE_VERIFY_FAILED`, a broker's `unknown ca` alert, `permission
//! denied`, `signature verification failed`), the message quotes it so that a search for that string
//! finds the answer.
//!
//! * [`chain`]: certificate files and presented chains. rustls-webpki reports a missing intermediate, a
//!   wrong root and a wrong intermediate all as `UnknownIssuer`; the doctor works the cause out itself by
//!   matching issuer names and key identifiers across the certificates presented and trusted, then runs
//!   webpki as a backstop so nothing it would refuse passes silently.
//! * [`compose`]: certificate and key paths across the services of a Compose file: shared volumes,
//!   read-only mounts, the reader's user against the writer's modes, start order.
//! * [`tls`]: what a TLS handshake showed (the caller connects; this judges).
//! * [`files`]: who can reach and read a file, given modes and owners the caller collected.
//! * [`token`]: JWKS documents of several replicas and a token.
//! * [`sampling`]: one address fetched several times (replicas behind a load balancer): how many
//!   key sets, and which share of the fetches verifies a token.
//! * [`service`]: a Castellan server or store: health, published keys, schema, key ring, CA, secrets,
//!   and certificates whose renewal was missed.
//!
//! This module does **not** open files or sockets, read the clock or the environment: callers do. It
//! parses PEM with `pem`, certificates with x509-parser, verifies with rustls-webpki and decodes JWTs
//! with jsonwebtoken; nothing here parses ASN.1, PEM or JWTs by hand.

pub mod chain;
pub mod compose;
pub mod files;
mod input;
pub mod sampling;
pub mod service;
pub mod tls;
pub mod token;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use chain::{ChainRequest, check_chain, check_presented};
pub use input::{Input, holds_private_key};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something will fail (or already does).
    Error,
    /// Something works now but is fragile, unsafe, or fails for some clients.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `text` made safe to print on a terminal: control characters (C0, DEL, C1, which start escape
/// sequences) and the bidirectional-override characters (which reorder what the eye reads) are written
/// as `\u{..}`; everything else is kept. Certificates, tokens and remote TLS servers supply much of
/// what the doctor prints, and none of it may drive the operator's terminal.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One thing the doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable kebab-case code (see [`codes`]).
    pub code: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What it is about: a file, `host:port`, a kid, a URL.
    pub subject: String,
    /// One line in plain words.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    /// A finding.
    pub fn new(
        code: &'static str,
        severity: Severity,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            code,
            severity,
            subject: subject.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// An error.
    pub fn error(
        code: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(code, Severity::Error, subject, message, fix)
    }

    /// A warning.
    pub fn warning(
        code: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(code, Severity::Warning, subject, message, fix)
    }

    /// Information.
    pub fn info(
        code: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(code, Severity::Info, subject, message, fix)
    }
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// The stable codes. Tools may match on them; they never change meaning.
pub mod codes {
    // Certificate files and chains.
    /// A file that should hold PEM does not: no block, bad base64, a wrong header, DER, binary.
    pub const PEM_INVALID: &str = "pem-invalid";
    /// A certificate file also holds a private key.
    pub const PRIVATE_KEY_IN_CERT_FILE: &str = "private-key-in-cert-file";
    /// The intermediate CA that issued a certificate is not presented with it.
    pub const MISSING_INTERMEDIATE: &str = "missing-intermediate";
    /// The certificates are not in leaf-first, issuer-after-subject order.
    pub const CHAIN_ORDER: &str = "chain-order";
    /// The chain leads to a root (or CA) that the CA file does not contain.
    pub const UNTRUSTED_ROOT: &str = "untrusted-root";
    /// The leaf is self-signed.
    pub const SELF_SIGNED_LEAF: &str = "self-signed-leaf";
    /// A certificate's notAfter has passed.
    pub const EXPIRED: &str = "expired";
    /// A certificate expires within a week, or is in the last third of a shorter lifetime.
    pub const EXPIRING_SOON: &str = "expiring-soon";
    /// A certificate's notBefore is in the future.
    pub const NOT_YET_VALID: &str = "not-yet-valid";
    /// The leaf is not valid for the host name asked for.
    pub const HOSTNAME_MISMATCH: &str = "hostname-mismatch";
    /// The leaf (or a CA above it) does not allow the purpose: serverAuth, clientAuth.
    pub const WRONG_PURPOSE: &str = "wrong-purpose";
    /// The private key is not the certificate's.
    pub const KEY_MISMATCH: &str = "key-mismatch";
    /// The key file cannot be used (unreadable, encrypted, unknown format).
    pub const KEY_INVALID: &str = "key-invalid";
    /// A certificate was issued by a certificate that is not a CA.
    pub const ISSUER_NOT_CA: &str = "issuer-not-ca";
    /// A CA's pathLenConstraint is exceeded by the CAs below it.
    pub const PATH_LENGTH_EXCEEDED: &str = "path-length-exceeded";
    /// The same certificate appears twice.
    pub const DUPLICATE_CERTIFICATE: &str = "duplicate-certificate";
    /// The presented chain includes the root (harmless, wasted bytes).
    pub const ROOT_IN_CHAIN: &str = "root-in-chain";
    /// A key too small or of a kind clients refuse.
    pub const WEAK_KEY: &str = "weak-key";
    /// A signature algorithm clients refuse (SHA-1, MD5).
    pub const WEAK_SIGNATURE: &str = "weak-signature";
    /// A signature does not verify with the key of the certificate it names as issuer.
    pub const SIGNATURE_INVALID: &str = "signature-invalid";
    /// A certificate in the file is not part of the leaf's chain.
    pub const UNRELATED_CERTIFICATE: &str = "unrelated-certificate";
    /// No CA file was given, so trust could not be judged.
    pub const TRUST_NOT_CHECKED: &str = "trust-not-checked";
    /// OpenSSL-based clients, Go's crypto/x509 or Java judge the chain or trust file otherwise than
    /// webpki: the message says which fail and what each prints.
    pub const VERIFIERS_DISAGREE: &str = "verifiers-disagree";
    /// A certificate carries a critical extension that verifiers do not know, so all refuse it.
    pub const CRITICAL_EXTENSION_UNKNOWN: &str = "critical-extension-unknown";
    /// The leaf names a host outside the name constraints of a CA above it.
    pub const NAME_CONSTRAINT_VIOLATED: &str = "name-constraint-violated";
    /// rustls-webpki refuses the chain for a reason no other check named.
    pub const VERIFICATION_FAILED: &str = "verification-failed";
    /// The chain is sound (summary).
    pub const CHAIN_OK: &str = "chain-ok";

    // TLS endpoints.
    /// TCP connection failed.
    pub const CONNECT_FAILED: &str = "connect-failed";
    /// The TLS handshake failed.
    pub const TLS_HANDSHAKE_FAILED: &str = "tls-handshake-failed";
    /// The server requires a client certificate and none was sent.
    pub const CLIENT_CERT_REQUIRED: &str = "client-cert-required";
    /// The server refused the client certificate sent.
    pub const CLIENT_CERT_REJECTED: &str = "client-cert-rejected";
    /// The server accepted the client certificate sent.
    pub const CLIENT_CERT_ACCEPTED: &str = "client-cert-accepted";
    /// The handshake completed (summary).
    pub const TLS_CONNECTED: &str = "tls-connected";

    // Files.
    /// The file does not exist.
    pub const FILE_MISSING: &str = "file-missing";
    /// The user cannot read the file.
    pub const NOT_READABLE: &str = "not-readable";
    /// The user cannot enter a parent directory (its execute bit is missing for them).
    pub const DIR_NOT_SEARCHABLE: &str = "dir-not-searchable";
    /// A private key readable by group or others.
    pub const KEY_TOO_OPEN: &str = "key-too-open";
    /// The file is owned by someone other than expected.
    pub const WRONG_OWNER: &str = "wrong-owner";
    /// The file is fine for the user (summary).
    pub const FILE_OK: &str = "file-ok";

    // JWKS and tokens.
    /// A JWKS could not be fetched or read.
    pub const JWKS_UNREACHABLE: &str = "jwks-unreachable";
    /// A JWKS is not a valid key set.
    pub const JWKS_INVALID: &str = "jwks-invalid";
    /// Replicas publish different key sets.
    pub const JWKS_DIVERGENCE: &str = "jwks-divergence";
    /// Replicas publish the same key set (summary).
    pub const JWKS_CONSISTENT: &str = "jwks-consistent";
    /// The token's kid is published by no given JWKS.
    pub const UNKNOWN_KID: &str = "unknown-kid";
    /// The token's `exp` has passed.
    pub const TOKEN_EXPIRED: &str = "token-expired";
    /// The token's `nbf` (or `iat`) is in the future.
    pub const TOKEN_NOT_YET_VALID: &str = "token-not-yet-valid";
    /// The token's `aud` does not include the expected audience.
    pub const AUDIENCE_MISMATCH: &str = "audience-mismatch";
    /// The token's `iss` is not the expected issuer.
    pub const ISSUER_MISMATCH: &str = "issuer-mismatch";
    /// The token's algorithm must not be accepted (`none`, HMAC against an asymmetric key, mismatch).
    pub const ALG_NOT_ALLOWED: &str = "alg-not-allowed";
    /// The token is not a well-formed JWT.
    pub const TOKEN_MALFORMED: &str = "token-malformed";
    /// A claim every verifier expects is missing.
    pub const CLAIM_MISSING: &str = "claim-missing";
    /// The token's signature verifies (summary).
    pub const SIGNATURE_VALID: &str = "signature-valid";
    /// No JWKS was given, so the signature was not checked.
    pub const SIGNATURE_NOT_CHECKED: &str = "signature-not-checked";
    /// Which replicas can verify the token (summary).
    pub const TOKEN_VERIFIES: &str = "token-verifies";
    /// Only a share of the fetches of one address (replicas behind a load balancer) can verify the
    /// token.
    pub const TOKEN_VERIFIES_PARTLY: &str = "token-verifies-partly";

    // Compose files.
    /// The Compose file cannot be read or parsed.
    pub const COMPOSE_INVALID: &str = "compose-invalid";
    /// A service reads a certificate or key that no volume shared with its writer provides.
    pub const COMPOSE_NOT_SHARED: &str = "compose-not-shared";
    /// A service reads a file that nothing writes where it looks (an empty volume, a wrong name).
    pub const COMPOSE_NOT_WRITTEN: &str = "compose-not-written";
    /// A service that only reads certificates or keys mounts their volume read-write.
    pub const COMPOSE_MOUNT_WRITABLE: &str = "compose-mount-writable";
    /// A service's user cannot read a file as Castellan's agent writes it.
    pub const COMPOSE_NOT_READABLE: &str = "compose-not-readable";
    /// A service may start before the service that writes its files has finished.
    pub const COMPOSE_START_ORDER: &str = "compose-start-order";
    /// An agent's configuration could not be read, so its files were not judged.
    pub const COMPOSE_AGENT_CONFIG: &str = "compose-agent-config";
    /// Every certificate and key path checks out (summary).
    pub const COMPOSE_OK: &str = "compose-ok";

    // A Castellan server or store.
    /// The server does not answer.
    pub const SERVER_UNREACHABLE: &str = "server-unreachable";
    /// The store cannot be opened.
    pub const STORE_UNREACHABLE: &str = "store-unreachable";
    /// The store has never been initialized.
    pub const STORE_NOT_INITIALIZED: &str = "store-not-initialized";
    /// The store's schema lacks migrations this binary carries (the doctor does not apply them).
    pub const STORE_SCHEMA_BEHIND: &str = "store-schema-behind";
    /// The store was migrated by a newer Castellan than this binary.
    pub const STORE_SCHEMA_NEWER: &str = "store-schema-newer";
    /// The key ring is not loaded (server) or cannot be loaded (store).
    pub const KEYRING_NOT_LOADED: &str = "keyring-not-loaded";
    /// The key ring is loaded (summary).
    pub const KEYRING_OK: &str = "keyring-ok";
    /// The store has no CA.
    pub const CA_MISSING: &str = "ca-missing";
    /// An issued certificate expires soon.
    pub const CERTIFICATE_EXPIRING: &str = "certificate-expiring";
    /// A stored secret's newest version does not open with the master key.
    pub const SECRET_UNREADABLE: &str = "secret-unreadable";
    /// Every stored secret's newest version opens (summary).
    pub const SECRETS_OK: &str = "secrets-ok";
}

/// Seconds in a day.
const DAY: i64 = 86_400;

/// A duration in words for messages: `3 days`, `5 hours`, `12 minutes`, `40 seconds`.
pub(crate) fn span(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let (n, unit) = if s >= 2 * DAY as u64 {
        (s / DAY as u64, "days")
    } else if s >= 7200 {
        (s / 3600, "hours")
    } else if s >= 120 {
        (s / 60, "minutes")
    } else {
        (s, "seconds")
    };
    format!("{n} {unit}")
}

/// Unix seconds as an RFC 3339 UTC time, for messages.
pub(crate) fn when(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => {
            let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => format!("unix time {unix}"),
    }
}

/// A key id in the usual colon-separated upper-case hex.
pub(crate) fn key_id(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
