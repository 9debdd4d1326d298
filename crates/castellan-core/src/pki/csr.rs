//! Key and CSR generation for the side that keeps its key (the agent): the private key never leaves it.

use rcgen::{CertificateParams, DistinguishedName, DnType};
use zeroize::Zeroizing;

use super::{KeyType, PkiError, build_err};

/// Generates a key of `key_type` and a CSR for it (subject CN `common_name` when given; the SANs are
/// asked for in the signing request, and the profile decides what is granted).
/// Returns the PKCS#8 private key PEM and the CSR PEM.
pub fn new_key_and_csr(
    key_type: KeyType,
    common_name: Option<&str>,
) -> Result<(Zeroizing<String>, String), PkiError> {
    let key = key_type.generate()?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(build_err("CSR parameters"))?;
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(build_err("CSR"))?
        .pem()
        .map_err(build_err("CSR PEM"))?;
    Ok((Zeroizing::new(key.serialize_pem()), csr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CaOptions, IssueRequest, Issuer, Profile, Purpose, create_ca, verify_set};

    #[test]
    fn a_generated_csr_is_signed_and_the_set_verifies_with_the_local_key() {
        let now = 1_800_000_000;
        let ca = create_ca(&CaOptions::root(), &CaOptions::intermediate(), now).expect("ca");
        let issuer = Issuer::from_ca(&ca.root, &ca.intermediate).expect("issuer");
        for kt in [KeyType::P256, KeyType::Ed25519] {
            let (key_pem, csr_pem) = new_key_and_csr(kt, Some("app")).expect("csr");
            assert!(key_pem.contains("BEGIN PRIVATE KEY"));
            let req = IssueRequest {
                dns_names: vec!["app.internal".into()],
                ttl_secs: Some(3600),
                ..IssueRequest::default()
            };
            let profile = Profile::builtin("client").expect("profile");
            let set = issuer
                .sign_csr(&profile, &csr_pem, &req, now)
                .expect("sign");
            assert!(set.key_pem.is_none());
            let mut pems = set.pems();
            pems.key_pem = Some(&key_pem);
            verify_set(&pems, Purpose::Client, now).expect("the local key matches the certificate");
        }
    }
}
