//! The certificate authority, free of I/O: key types, profiles, CA creation and import, leaf issuance
//! (with a generated key or from a CSR), verification of output sets, CRLs and certificate parsing.
//!
//! Certificates are built and signed by rcgen, verified by rustls-webpki and read by x509-parser, all on
//! aws-lc-rs. Nothing here encodes ASN.1 or PEM by hand.
//!
//! Time always comes in as a parameter (`now`, seconds since the Unix epoch); nothing reads the clock.
//! Serial numbers and generated keys use the system's secure random generator through aws-lc-rs.
//!
//! # The hierarchy
//!
//! [`create_ca`] makes a root (10 years, self-signed) and an intermediate (5 years, pathLenConstraint 0)
//! that signs every leaf. An [`Issuer`] holds the intermediate's key parsed once, plus the chain; it is
//! built from stored PEM and PKCS#8 ([`Issuer::new`]) or from an operator's own CA ([`import_ca`]).
//!
//! # Issuance
//!
//! [`Issuer::issue`] generates the key; [`Issuer::sign_csr`] certifies the key of a CSR. Both check the
//! request against a [`Profile`] and return an [`IssuedSet`] only after the leaf has been verified the way
//! a TLS peer would verify it ([`verify_set`] runs the same checks on files read back from disk).

mod ca;
mod crl;
mod csr;
mod error;
mod issuer;
mod key;
mod parse;
mod profile;
mod verify;

#[cfg(test)]
mod tests;

pub use crate::key_type::KeyType;
pub use ca::{CaCert, CaOptions, NewCa, create_ca, create_intermediate_ca, create_root_ca};
pub use crl::{Crl, RevocationReason, RevokedCert};
pub use csr::new_key_and_csr;
pub use error::PkiError;
pub use issuer::{ImportedCa, IssueRequest, IssuedSet, Issuer, import_ca};
pub use parse::{CertInfo, parse_cert_der, parse_cert_pem, parse_certs_pem};
pub use profile::{
    BUILTIN_MAX_TTL, ClientPatterns, MAX_CLIENT_PATTERNS, MAX_SANS, NameBounds, Names, Profile,
    Profiles, Purpose, SanKind,
};
pub use verify::{SetPems, verify_set};

use pem::{EncodeConfig, LineEnding, Pem};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

/// How far in the past a certificate's notBefore is put, to absorb clock skew between machines (for a
/// leaf, at most a tenth of its lifetime).
pub const BACKDATE_SECS: i64 = 60;

/// Seconds in a day.
pub(crate) const DAY: i64 = 86_400;

/// PEM with `\n` line endings on every platform.
pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &Pem::new(tag, der),
        EncodeConfig::new().set_line_ending(LineEnding::LF),
    )
}

/// Concatenated `CERTIFICATE` PEM blocks.
pub(crate) fn certs_to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|c| pem_encode("CERTIFICATE", c.as_ref()))
        .collect()
}

/// Reads every PEM block of `text`; `what` names the input in errors.
pub(crate) fn pem_blocks(text: &str, what: &str) -> Result<Vec<Pem>, PkiError> {
    pem::parse_many(text).map_err(|e| PkiError::MalformedPem {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads the certificates of a PEM text: at least one, and nothing but certificates.
pub(crate) fn certs_from_pem(
    text: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let blocks = pem_blocks(text, what)?;
    if blocks.is_empty() {
        return Err(PkiError::MalformedPem {
            what: what.to_owned(),
            reason: "no `-----BEGIN CERTIFICATE-----` block found".to_owned(),
        });
    }
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        if block.tag() != "CERTIFICATE" {
            return Err(PkiError::MalformedPem {
                what: what.to_owned(),
                reason: format!(
                    "expected only CERTIFICATE blocks, found a `{}` block",
                    block.tag()
                ),
            });
        }
        let der = CertificateDer::from(block.into_contents());
        // Refuse bytes that do not parse as a certificate here, so later errors can assume they do.
        parse::x509(&der, what)?;
        out.push(der);
    }
    Ok(out)
}

/// Exactly one certificate.
pub(crate) fn one_cert_from_pem(
    text: &str,
    what: &str,
) -> Result<CertificateDer<'static>, PkiError> {
    let mut certs = certs_from_pem(text, what)?;
    if certs.len() != 1 {
        return Err(PkiError::MalformedPem {
            what: what.to_owned(),
            reason: format!("expected exactly one certificate, found {}", certs.len()),
        });
    }
    certs.pop().ok_or_else(|| PkiError::MalformedPem {
        what: what.to_owned(),
        reason: "no certificate".to_owned(),
    })
}

/// Unix seconds as rcgen's time type.
pub(crate) fn datetime(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| PkiError::InvalidTime {
        reason: format!("{unix} is not a representable unix time: {e}"),
    })
}

/// `now` as webpki's time type (it must not be before 1970).
pub(crate) fn unix_time(now: i64) -> Result<rustls_pki_types::UnixTime, PkiError> {
    let secs = u64::try_from(now).map_err(|_| PkiError::InvalidTime {
        reason: format!("{now} is before 1970-01-01"),
    })?;
    Ok(rustls_pki_types::UnixTime::since_unix_epoch(
        std::time::Duration::from_secs(secs),
    ))
}

/// `now + secs`, refusing overflow.
pub(crate) fn add_secs(now: i64, secs: u64) -> Result<i64, PkiError> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| now.checked_add(s))
        .ok_or_else(|| PkiError::InvalidTime {
            reason: format!("{now} + {secs} seconds overflows"),
        })
}

/// A serial number: 16 bytes, the first 6 the wall clock in milliseconds since 1970 and the other 10
/// (80 bits) from the system's CSPRNG. The CA/Browser Forum asks for at least 64 random bits; the time
/// prefix makes serials issued one after another sort together, so the store's index of serials grows
/// at its end instead of touching a random page of a large index for every certificate (which made the
/// issuance's tail latency grow with the database). The first byte is nonzero and below 0x80 (until the
/// year 6429), so the DER INTEGER is positive and exactly 16 bytes long.
pub(crate) fn new_serial() -> Result<[u8; 16], PkiError> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&(millis as u64 & 0xffff_ffff_ffff).to_be_bytes()[2..]);
    aws_lc_rs::rand::fill(&mut bytes[6..]).map_err(|_| PkiError::KeyGeneration)?;
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    Ok(bytes)
}

/// A duration for messages: `90d`, `12h`, `30m` or `45s`, whichever is exact.
pub(crate) fn human_secs(secs: u64) -> String {
    const D: u64 = 86_400;
    if secs >= D && secs.is_multiple_of(D) {
        format!("{}d", secs / D)
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Maps an rcgen error while building `what`.
pub(crate) fn build_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |e| PkiError::Build {
        what,
        reason: e.to_string(),
    }
}
