//! Certificate revocation lists, signed by the issuing CA.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Issuer, PkiError, build_err, datetime, pem_encode};

/// Why a certificate was revoked (RFC 5280 §5.3.1). Names are kebab-case (`key-compromise`); the RFC's
/// camelCase (`keyCompromise`) is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// No reason given. RFC 5280 asks that the reason code be left out of the CRL in this case, and
    /// rcgen does so.
    Unspecified,
    /// The certificate's private key was compromised.
    KeyCompromise,
    /// The CA's key was compromised.
    CaCompromise,
    /// The subject's name or other information changed.
    AffiliationChanged,
    /// The certificate was replaced.
    Superseded,
    /// The certificate is no longer needed.
    CessationOfOperation,
    /// The certificate is on hold.
    CertificateHold,
    /// The privileges granted to the subject were withdrawn.
    PrivilegeWithdrawn,
    /// An attribute authority was compromised.
    AaCompromise,
}

const REASONS: [(RevocationReason, &str, &str); 9] = [
    (RevocationReason::Unspecified, "unspecified", "unspecified"),
    (
        RevocationReason::KeyCompromise,
        "key-compromise",
        "keyCompromise",
    ),
    (
        RevocationReason::CaCompromise,
        "ca-compromise",
        "cACompromise",
    ),
    (
        RevocationReason::AffiliationChanged,
        "affiliation-changed",
        "affiliationChanged",
    ),
    (RevocationReason::Superseded, "superseded", "superseded"),
    (
        RevocationReason::CessationOfOperation,
        "cessation-of-operation",
        "cessationOfOperation",
    ),
    (
        RevocationReason::CertificateHold,
        "certificate-hold",
        "certificateHold",
    ),
    (
        RevocationReason::PrivilegeWithdrawn,
        "privilege-withdrawn",
        "privilegeWithdrawn",
    ),
    (
        RevocationReason::AaCompromise,
        "aa-compromise",
        "aACompromise",
    ),
];

const EXPECTED: &str = "unspecified, key-compromise, ca-compromise, affiliation-changed, superseded, \
                        cessation-of-operation, certificate-hold, privilege-withdrawn, aa-compromise";

impl RevocationReason {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        REASONS
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("unspecified", |(_, name, _)| name)
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => R::Unspecified,
            RevocationReason::KeyCompromise => R::KeyCompromise,
            RevocationReason::CaCompromise => R::CaCompromise,
            RevocationReason::AffiliationChanged => R::AffiliationChanged,
            RevocationReason::Superseded => R::Superseded,
            RevocationReason::CessationOfOperation => R::CessationOfOperation,
            RevocationReason::CertificateHold => R::CertificateHold,
            RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => R::AaCompromise,
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, PkiError> {
        let t = s.trim();
        REASONS
            .iter()
            .find(|(_, kebab, camel)| {
                t.eq_ignore_ascii_case(kebab) || t.eq_ignore_ascii_case(camel)
            })
            .map(|(r, _, _)| *r)
            .ok_or_else(|| PkiError::UnknownRevocationReason {
                value: s.to_owned(),
                expected: EXPECTED,
            })
    }
}

impl Serialize for RevocationReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RevocationReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert {
    /// The serial number, hex (as in [`super::IssuedSet::serial_hex`]).
    pub serial_hex: String,
    /// When it was revoked, unix seconds.
    pub revoked_at: i64,
    /// Why, if known.
    pub reason: Option<RevocationReason>,
}

/// A signed CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    /// DER, as served at the CRL distribution point.
    pub der: Vec<u8>,
    /// PEM (`X509 CRL`).
    pub pem: String,
    /// The CRL number.
    pub crl_number: u64,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds.
    pub next_update: i64,
}

impl Issuer {
    /// Builds a CRL signed by the issuing CA: version 2, thisUpdate `now`, nextUpdate
    /// `now + next_update_secs`, the authority key identifier (the CA's own subject key identifier),
    /// the CRL number, and one entry per revoked certificate with its reason code when one is given.
    ///
    /// `crl_number` must grow with every CRL the CA publishes; the store keeps it.
    pub fn build_crl(
        &self,
        revoked: &[RevokedCert],
        crl_number: u64,
        next_update_secs: u64,
        now: i64,
    ) -> Result<Crl, PkiError> {
        if next_update_secs == 0 {
            return Err(PkiError::InvalidTime {
                reason: "nextUpdate must be after thisUpdate".to_owned(),
            });
        }
        let next_update = super::add_secs(now, next_update_secs)?;
        let mut entries = Vec::with_capacity(revoked.len());
        for r in revoked {
            entries.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial_from_hex(&r.serial_hex)?),
                revocation_time: datetime(r.revoked_at)?,
                reason_code: r.reason.map(RevocationReason::to_rcgen),
                invalidity_date: None,
            });
        }
        // rcgen derives the CRL's AKI from the params' own method, not from the issuer's certificate:
        // pin it to the CA's subject key identifier so the two always match.
        let key_identifier_method = match &self.ca_key_id {
            Some(id) => KeyIdMethod::PreSpecified(id.clone()),
            None => KeyIdMethod::Sha256,
        };
        let params = CertificateRevocationListParams {
            this_update: datetime(now)?,
            next_update: datetime(next_update)?,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs: entries,
            key_identifier_method,
        };
        let crl = params.signed_by(&self.signer).map_err(build_err("CRL"))?;
        let der = crl.der().to_vec();
        Ok(Crl {
            pem: pem_encode("X509 CRL", &der),
            der,
            crl_number,
            this_update: now,
            next_update,
        })
    }
}

/// A serial number from hex (`0a1b…`, optionally with `:` separators): 1 to 20 bytes, not zero.
pub(crate) fn serial_from_hex(s: &str) -> Result<Vec<u8>, PkiError> {
    let invalid = |reason: &str| PkiError::InvalidSerial {
        value: s.to_owned(),
        reason: reason.to_owned(),
    };
    let clean: String = s.trim().chars().filter(|c| *c != ':').collect();
    let padded = if clean.len() % 2 == 1 {
        format!("0{clean}")
    } else {
        clean
    };
    let bytes = hex::decode(&padded).map_err(|_| invalid("not hexadecimal"))?;
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .ok_or_else(|| invalid("zero or empty"))?;
    let bytes = bytes[start..].to_vec();
    // A positive INTEGER of more than 20 bytes (RFC 5280 §4.1.2.2), counting the sign byte.
    let encoded_len = bytes.len() + usize::from(bytes.first().is_some_and(|b| b & 0x80 != 0));
    if encoded_len > 20 {
        return Err(invalid("longer than 20 bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_in_both_spellings() {
        for (r, kebab, camel) in REASONS {
            assert_eq!(kebab.parse::<RevocationReason>().expect("kebab"), r);
            assert_eq!(camel.parse::<RevocationReason>().expect("camel"), r);
            assert_eq!(r.as_str(), kebab);
        }
        assert!(matches!(
            "stolen".parse::<RevocationReason>(),
            Err(PkiError::UnknownRevocationReason { .. })
        ));
    }

    #[test]
    fn serials_from_hex() {
        assert_eq!(serial_from_hex("0a:ff").expect("colons"), vec![0x0a, 0xff]);
        assert_eq!(serial_from_hex("abc").expect("odd"), vec![0x0a, 0xbc]);
        assert_eq!(
            serial_from_hex("00017f").expect("leading zeros"),
            vec![0x01, 0x7f]
        );
        assert!(serial_from_hex("00").is_err());
        assert!(serial_from_hex("xyz").is_err());
        assert!(serial_from_hex(&"7f".repeat(21)).is_err());
        assert!(serial_from_hex(&"ff".repeat(20)).is_err());
        assert!(serial_from_hex(&"7f".repeat(20)).is_ok());
    }
}
