//! The errors of the PKI module.

use super::profile::SanKind;

/// Errors from certificate authority work: profiles, issuance, verification, import and CRLs.
///
/// Messages are meant for the person who made the request: they name the value that was refused and
/// the rule that refused it. None of them carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// An unknown certificate key type name.
    #[error(
        "unknown key type `{value}` (expected one of: p-256, p-384, ed25519, rsa-2048, rsa-3072, rsa-4096)"
    )]
    UnknownKeyType {
        /// What was given.
        value: String,
    },
    /// An unknown profile purpose name.
    #[error("unknown certificate purpose `{value}` (expected one of: server, client, peer)")]
    UnknownPurpose {
        /// What was given.
        value: String,
    },
    /// An unknown revocation reason name.
    #[error("unknown revocation reason `{value}` (expected one of: {expected})")]
    UnknownRevocationReason {
        /// What was given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// No profile has this name.
    #[error("unknown certificate profile `{name}` (known: {known})")]
    UnknownProfile {
        /// The requested name.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// A profile's definition is not usable.
    #[error("profile `{profile}` is invalid: {reason}")]
    InvalidProfile {
        /// The profile.
        profile: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The requested key type is not one the profile allows.
    #[error("key type {key_type} is not allowed by profile `{profile}` (allowed: {allowed})")]
    KeyTypeNotAllowed {
        /// The requested key type.
        key_type: String,
        /// The profile.
        profile: String,
        /// The key types the profile allows, comma-separated.
        allowed: String,
    },
    /// The requested lifetime is zero.
    #[error("the requested TTL must be at least one second")]
    TtlZero,
    /// The requested lifetime is longer than the profile allows.
    #[error(
        "requested TTL {requested} exceeds the maximum of {max} allowed by profile `{profile}`"
    )]
    TtlTooLong {
        /// The requested TTL, human-readable.
        requested: String,
        /// The profile's maximum, human-readable.
        max: String,
        /// The profile.
        profile: String,
    },
    /// The certificate would outlive a CA certificate of its chain (the issuing CA, one above it, or the
    /// root).
    #[error(
        "the certificate would expire at {not_after} (unix), after the CA `{ca}` of its chain expires at \
         {ca_not_after}; ask for a shorter TTL or renew that CA"
    )]
    TtlBeyondCa {
        /// The leaf's notAfter (unix seconds).
        not_after: i64,
        /// The subject of the chain's CA certificate that expires first.
        ca: String,
        /// That CA certificate's notAfter (unix seconds).
        ca_not_after: i64,
    },
    /// A requested subject alternative name is outside the profile's patterns.
    #[error("{kind} `{value}` is not allowed by profile `{profile}` (allowed: {allowed})")]
    SanNotAllowed {
        /// The kind of name.
        kind: SanKind,
        /// The refused name.
        value: String,
        /// The profile.
        profile: String,
        /// The profile's patterns for this kind, comma-separated (or `none`).
        allowed: String,
    },
    /// A requested name is outside the certificate names its client may ask for.
    #[error(
        "{kind} `{value}` is not among the certificate names {owner} may ask for (its patterns: {allowed})"
    )]
    NameNotAllowed {
        /// The kind of name.
        kind: String,
        /// The refused name.
        value: String,
        /// Whose patterns refused it (`client `billing``).
        owner: String,
        /// Those patterns of this kind, comma-separated (or `none`).
        allowed: String,
    },
    /// A requested name is one of Castellan's own API names.
    #[error(
        "`{value}` is a name of this Castellan's own API (a certificate for it could impersonate the server that \
         holds every secret and signs every token): it is never issued to a client unless `pki.issue_castellan_names = true`"
    )]
    ReservedName {
        /// The reserved name the request would cover.
        value: String,
    },
    /// The requested common name is not allowed by the profile.
    #[error("common name `{value}` is not allowed by profile `{profile}`: {reason}")]
    CommonNameNotAllowed {
        /// The refused common name.
        value: String,
        /// The profile.
        profile: String,
        /// The rule that refused it.
        reason: String,
    },
    /// A requested name is not syntactically valid.
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidName {
        /// What kind of name (`DNS name`, `URI`, `common name`, ...).
        kind: &'static str,
        /// The value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The request names too many subject alternative names.
    #[error("too many subject alternative names: {count} (at most {max})")]
    TooManySans {
        /// How many were requested.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Neither a common name nor any subject alternative name was given.
    #[error("the certificate needs a common name or at least one DNS name, IP address or URI")]
    NoSubjectName,
    /// The text is not a PEM-encoded CSR, or the CSR cannot be parsed.
    #[error("malformed certificate signing request: {reason}")]
    MalformedCsr {
        /// Why.
        reason: String,
    },
    /// The CSR's self-signature does not verify: it was altered, or not signed by the key it carries.
    #[error(
        "the certificate signing request's signature does not verify (the CSR was altered or not signed by its own key)"
    )]
    CsrSignature,
    /// The CSR carries a key this CA does not certify.
    #[error("the CSR's public key is not supported: {reason}")]
    UnsupportedCsrKey {
        /// Why.
        reason: String,
    },
    /// The request names a key type that differs from the CSR's key.
    #[error("the request asks for key type {requested} but the CSR holds a {csr} key")]
    CsrKeyTypeMismatch {
        /// The requested key type.
        requested: String,
        /// The CSR's key type.
        csr: String,
    },
    /// A PEM input could not be read.
    #[error("{what}: malformed PEM: {reason}")]
    MalformedPem {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A certificate could not be parsed.
    #[error("{what}: malformed certificate: {reason}")]
    MalformedCertificate {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A private key could not be read.
    #[error("{what}: {reason}")]
    MalformedKey {
        /// Which input.
        what: String,
        /// Why.
        reason: String,
    },
    /// A certificate that must be a CA is not one.
    #[error("`{subject}` cannot be used as a CA: {reason}")]
    NotACa {
        /// The certificate's subject.
        subject: String,
        /// What is missing.
        reason: String,
    },
    /// A private key does not belong to the certificate it was given with.
    #[error(
        "the private key does not match the certificate `{subject}` (their public keys differ)"
    )]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// The issuer chain is incomplete or does not link up.
    #[error("the CA chain is broken: {reason}")]
    ChainBroken {
        /// What is missing or wrong.
        reason: String,
    },
    /// A certificate is not valid at the given time.
    #[error("`{subject}` is not valid at {now} (unix): valid from {not_before} to {not_after}")]
    NotValidNow {
        /// The certificate's subject.
        subject: String,
        /// The time checked.
        now: i64,
        /// Its notBefore (unix seconds).
        not_before: i64,
        /// Its notAfter (unix seconds).
        not_after: i64,
    },
    /// rustls-webpki refused the certificate path.
    #[error("the certificate does not verify against {against} for {usage}: {error}")]
    VerificationFailed {
        /// What it was verified against (for example `root.pem with the intermediates of chain.pem`).
        against: String,
        /// The usage checked (`server authentication` or `client authentication`).
        usage: &'static str,
        /// webpki's error.
        error: String,
    },
    /// The certificate is not valid for one of its own names (as a TLS peer would check it).
    #[error("the certificate is not valid for `{name}`: {error}")]
    NameMismatch {
        /// The name.
        name: String,
        /// webpki's error.
        error: String,
    },
    /// The certificate lacks the extended key usage its purpose needs.
    #[error("the certificate lacks extended key usage {missing} required for purpose `{purpose}`")]
    PurposeMismatch {
        /// The purpose checked.
        purpose: String,
        /// The missing usage.
        missing: &'static str,
    },
    /// The files of an output set do not belong together.
    #[error("inconsistent certificate set: {reason}")]
    SetMismatch {
        /// What does not match.
        reason: String,
    },
    /// A serial number is not valid hex or not a valid serial.
    #[error("invalid serial number `{value}`: {reason}")]
    InvalidSerial {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A time parameter is out of range.
    #[error("invalid time: {reason}")]
    InvalidTime {
        /// Why.
        reason: String,
    },
    /// A random number or a key could not be generated.
    #[error("key generation failed")]
    KeyGeneration,
    /// Building or signing a certificate or CRL failed inside rcgen.
    #[error("building the {what} failed: {reason}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// rcgen's error.
        reason: String,
    },
}

impl PkiError {
    /// A stable kebab-case code for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            PkiError::UnknownKeyType { .. } => "unknown-key-type",
            PkiError::UnknownPurpose { .. } => "unknown-purpose",
            PkiError::UnknownRevocationReason { .. } => "unknown-revocation-reason",
            PkiError::UnknownProfile { .. } => "unknown-profile",
            PkiError::InvalidProfile { .. } => "invalid-profile",
            PkiError::KeyTypeNotAllowed { .. } => "key-type-not-allowed",
            PkiError::TtlZero => "ttl-zero",
            PkiError::TtlTooLong { .. } => "ttl-too-long",
            PkiError::TtlBeyondCa { .. } => "ttl-beyond-ca",
            PkiError::SanNotAllowed { .. } => "san-not-allowed",
            PkiError::CommonNameNotAllowed { .. } => "common-name-not-allowed",
            PkiError::NameNotAllowed { .. } => "name-not-allowed-for-client",
            PkiError::ReservedName { .. } => "name-reserved",
            PkiError::InvalidName { .. } => "invalid-name",
            PkiError::TooManySans { .. } => "too-many-sans",
            PkiError::NoSubjectName => "no-subject-name",
            PkiError::MalformedCsr { .. } => "malformed-csr",
            PkiError::CsrSignature => "csr-bad-signature",
            PkiError::UnsupportedCsrKey { .. } => "unsupported-csr-key",
            PkiError::CsrKeyTypeMismatch { .. } => "csr-key-type-mismatch",
            PkiError::MalformedPem { .. } => "malformed-pem",
            PkiError::MalformedCertificate { .. } => "malformed-certificate",
            PkiError::MalformedKey { .. } => "malformed-key",
            PkiError::NotACa { .. } => "not-a-ca",
            PkiError::KeyMismatch { .. } => "key-mismatch",
            PkiError::ChainBroken { .. } => "chain-broken",
            PkiError::NotValidNow { .. } => "not-valid-now",
            PkiError::VerificationFailed { .. } => "verification-failed",
            PkiError::NameMismatch { .. } => "name-mismatch",
            PkiError::PurposeMismatch { .. } => "purpose-mismatch",
            PkiError::SetMismatch { .. } => "set-mismatch",
            PkiError::InvalidSerial { .. } => "invalid-serial",
            PkiError::InvalidTime { .. } => "invalid-time",
            PkiError::KeyGeneration => "key-generation",
            PkiError::Build { .. } => "build-failed",
        }
    }
}
