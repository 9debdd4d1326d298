//! `/v1/pki`: the issued set, the sign body, the CA and the certificate list.

use castellan_core::pki::{self, IssueRequest, IssuedSet, KeyType};

/// The JSON form of an issued set (API responses and what `--out` writes).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct SetJson {
    /// Serial, hex.
    pub serial: String,
    /// Profile.
    pub profile: String,
    /// `server`, `client` or `peer`.
    pub purpose: pki::Purpose,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
    /// `cert.pem`.
    pub cert_pem: String,
    /// `chain.pem`.
    pub chain_pem: String,
    /// `ca-bundle.pem`.
    pub ca_bundle_pem: String,
    /// `root.pem`.
    pub root_pem: String,
    /// `key.pem` (absent for a signed CSR).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_pem: Option<String>,
}

impl std::fmt::Debug for SetJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetJson")
            .field("serial", &self.serial)
            .field("profile", &self.profile)
            .field("purpose", &self.purpose)
            .field("not_after", &self.not_after)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl From<&IssuedSet> for SetJson {
    fn from(s: &IssuedSet) -> Self {
        Self {
            serial: s.serial_hex.clone(),
            profile: s.profile.clone(),
            purpose: s.purpose,
            not_before: s.not_before,
            not_after: s.not_after,
            cert_pem: s.cert_pem.clone(),
            chain_pem: s.chain_pem.clone(),
            ca_bundle_pem: s.ca_bundle_pem.clone(),
            root_pem: s.root_pem.clone(),
            key_pem: s.key_pem.as_ref().map(|k| k.to_string()),
        }
    }
}

impl SetJson {
    /// The PEMs for verification.
    pub fn pems(&self) -> pki::SetPems<'_> {
        pki::SetPems {
            cert_pem: &self.cert_pem,
            chain_pem: &self.chain_pem,
            ca_bundle_pem: &self.ca_bundle_pem,
            root_pem: &self.root_pem,
            key_pem: self.key_pem.as_deref(),
        }
    }
}

/// `POST /v1/pki/sign/{profile}`: a CSR and, optionally, the names and lifetime to give it.
///
/// Fields are in alphabetical order and empty options are left out: the bytes the CLI and the agent
/// sent before this type existed (an [`IssueRequest`] turned into a sorted map, nulls dropped).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// The subject common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// The CSR, PEM.
    pub csr: String,
    /// DNS SANs.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP SANs.
    #[serde(default)]
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// The key type (must be the CSR's when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    /// Lifetime, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
    /// URI SANs.
    #[serde(default)]
    pub uris: Vec<String>,
}

impl SignBody {
    /// The body asking to sign `csr_pem` as `req` says.
    pub fn new(csr_pem: &str, req: &IssueRequest) -> Self {
        Self {
            common_name: req.common_name.clone(),
            csr: csr_pem.to_owned(),
            dns_names: req.dns_names.clone(),
            ip_addresses: req.ip_addresses.clone(),
            key_type: req.key_type,
            ttl_secs: req.ttl_secs,
            uris: req.uris.clone(),
        }
    }

    /// The CSR and what is asked for it.
    pub fn into_parts(self) -> (String, IssueRequest) {
        let req = IssueRequest {
            common_name: self.common_name,
            dns_names: self.dns_names,
            ip_addresses: self.ip_addresses,
            uris: self.uris,
            ttl_secs: self.ttl_secs,
            key_type: self.key_type,
        };
        (self.csr, req)
    }
}

/// `GET /v1/pki/ca`: the trust anchors (public). Every field is optional when read, so a reader
/// can name the one it needs that is missing; the server always sends them all.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaJson {
    /// Root, then intermediates.
    #[serde(default)]
    pub ca_bundle_pem: Option<String>,
    /// The issuing CA's notAfter.
    #[serde(default)]
    pub issuing_ca_not_after: Option<i64>,
    /// The issuing CA's certificate.
    #[serde(default)]
    pub issuing_ca_pem: Option<String>,
    /// The issuing CA's subject.
    #[serde(default)]
    pub issuing_ca_subject: Option<String>,
    /// The root alone.
    #[serde(default)]
    pub root_pem: Option<String>,
}

/// An issued certificate as listed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CertSummary {
    /// Serial, hex.
    pub serial: String,
    /// Profile.
    pub profile: String,
    /// Subject CN.
    pub common_name: Option<String>,
    /// SANs (`dns:`, `ip:`, `uri:` prefixed).
    pub sans: Vec<String>,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// Revocation reason, if given.
    pub revocation_reason: Option<String>,
}

/// `GET /v1/pki/certs`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CertList {
    /// Soonest expiry first.
    pub certificates: Vec<CertSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_body_is_the_bytes_of_the_request_as_a_sorted_map_without_nulls() {
        let req = IssueRequest {
            dns_names: vec!["a.internal".into()],
            ttl_secs: Some(60),
            ..IssueRequest::default()
        };
        let mut old = serde_json::to_value(&req).expect("json");
        if let Some(o) = old.as_object_mut() {
            o.retain(|_, v| !v.is_null());
            o.insert("csr".into(), "PEM".into());
        }
        let new = serde_json::to_string(&SignBody::new("PEM", &req)).expect("json");
        assert_eq!(new, old.to_string());
        let (csr, back) = serde_json::from_str::<SignBody>(&new)
            .expect("read")
            .into_parts();
        assert_eq!((csr.as_str(), back), ("PEM", req));
    }
}
