//! Certificate keys: generating a [`KeyType`]'s key pair, loading from PKCS#8, and recognising a public
//! key's type.

use rcgen::{KeyPair, PublicKeyData, RsaKeySize};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use super::PkiError;
use crate::key_type::KeyType;

impl KeyType {
    /// Generates a key pair of this type.
    pub(crate) fn generate(self) -> Result<KeyPair, PkiError> {
        let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
        match self {
            KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            // rcgen writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key), which OpenSSL 3.0
            // and pyca/cryptography refuse; generate with aws-lc-rs and keep the v1 encoding instead.
            KeyType::Ed25519 => {
                let der = aws_lc_rs::signature::Ed25519KeyPair::generate()
                    .and_then(|k| k.to_pkcs8v1())
                    .map_err(|_| PkiError::KeyGeneration)?;
                KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(der.as_ref().to_vec()),
                    &rcgen::PKCS_ED25519,
                )
            }
            KeyType::Rsa2048 => rsa(RsaKeySize::_2048),
            KeyType::Rsa3072 => rsa(RsaKeySize::_3072),
            KeyType::Rsa4096 => rsa(RsaKeySize::_4096),
        }
        .map_err(|_| PkiError::KeyGeneration)
    }

    /// The type of a DER SubjectPublicKeyInfo, or why it is not one Castellan certifies.
    pub(crate) fn of_spki_der(spki_der: &[u8]) -> Result<KeyType, String> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| format!("unreadable public key: {e}"))?;
        Self::of_spki(&spki)
    }

    /// The type of a parsed SubjectPublicKeyInfo, or why it is not one Castellan certifies.
    pub(crate) fn of_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, String> {
        let alg = &spki.algorithm.algorithm;
        if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            return match curve {
                Some(c) if c == OID_EC_P256 => Ok(KeyType::P256),
                Some(c) if c == OID_NIST_EC_P384 => Ok(KeyType::P384),
                Some(c) => Err(format!(
                    "elliptic curve {c} is not supported (use P-256 or P-384)"
                )),
                None => Err("EC public key without a named curve".to_owned()),
            };
        }
        if *alg == OID_SIG_ED25519 {
            return Ok(KeyType::Ed25519);
        }
        if *alg == OID_PKCS1_RSAENCRYPTION {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
                _ => return Err("unreadable RSA public key".to_owned()),
            };
            return match bits {
                2048 => Ok(KeyType::Rsa2048),
                3072 => Ok(KeyType::Rsa3072),
                4096 => Ok(KeyType::Rsa4096),
                n => Err(format!(
                    "RSA keys of {n} bits are not supported (use 2048, 3072 or 4096)"
                )),
            };
        }
        Err(format!(
            "public key algorithm {alg} is not supported (use P-256, P-384, Ed25519 or RSA)"
        ))
    }
}

/// The bit length of a big-endian unsigned integer.
fn modulus_bits(bytes: &[u8]) -> usize {
    let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    let lead = trimmed
        .first()
        .map_or(0, |b| 8 - b.leading_zeros() as usize);
    (trimmed.len() - 1) * 8 + lead
}

/// Loads a PKCS#8 private key (DER). Other encodings (SEC1, PKCS#1) are refused.
pub(crate) fn load_pkcs8(der: &[u8], what: &str) -> Result<(KeyPair, KeyType), PkiError> {
    let malformed = |reason: &str| PkiError::MalformedKey {
        what: what.to_owned(),
        reason: reason.to_owned(),
    };
    match PrivateKeyDer::try_from(der) {
        Ok(PrivateKeyDer::Pkcs8(_)) => {}
        Ok(_) => return Err(malformed("the private key is not PKCS#8")),
        Err(_) => return Err(malformed("not a DER private key")),
    }
    let pair = KeyPair::try_from(&PrivatePkcs8KeyDer::from(der))
        .map_err(|e| malformed(&format!("the PKCS#8 private key cannot be used: {e}")))?;
    let key_type = KeyType::of_spki_der(&pair.subject_public_key_info())
        .map_err(|reason| malformed(&reason))?;
    Ok((pair, key_type))
}

/// Loads a private key from PEM: exactly one `PRIVATE KEY` (PKCS#8) block. Returns the pair, its type
/// and the PKCS#8 DER.
pub(crate) fn load_pkcs8_pem(
    text: &str,
    what: &str,
) -> Result<(KeyPair, KeyType, Zeroizing<Vec<u8>>), PkiError> {
    let malformed = |reason: String| PkiError::MalformedKey {
        what: what.to_owned(),
        reason,
    };
    let blocks = pem::parse_many(text).map_err(|e| malformed(format!("malformed PEM: {e}")))?;
    let mut keys = Vec::new();
    for block in blocks {
        match block.tag() {
            "PRIVATE KEY" => keys.push(Zeroizing::new(block.into_contents())),
            tag @ ("EC PRIVATE KEY" | "RSA PRIVATE KEY") => {
                return Err(malformed(format!(
                    "the key is in the legacy `{tag}` format; convert it to PKCS#8 with \
                     `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem`"
                )));
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(malformed(
                    "the key is encrypted; decrypt it with `openssl pkcs8 -in key.pem -out key-plain.pem`".to_owned(),
                ));
            }
            _ => {}
        }
    }
    let der = match keys.len() {
        1 => keys.remove(0),
        0 => {
            return Err(malformed(
                "no `-----BEGIN PRIVATE KEY-----` block found".to_owned(),
            ));
        }
        n => return Err(malformed(format!("expected one private key, found {n}"))),
    };
    let (pair, key_type) = load_pkcs8(&der, what)?;
    Ok((pair, key_type, der))
}

/// Whether a key pair's public key is the one in a DER SubjectPublicKeyInfo (same algorithm and
/// parameters, same key bits), comparing parsed structures rather than encodings.
pub(crate) fn key_matches_spki(pair: &KeyPair, cert_spki_der: &[u8]) -> bool {
    let ours = pair.subject_public_key_info();
    let (Ok((_, a)), Ok((_, b))) = (
        SubjectPublicKeyInfo::from_der(&ours),
        SubjectPublicKeyInfo::from_der(cert_spki_der),
    ) else {
        return false;
    };
    a.algorithm == b.algorithm && a.subject_public_key.data == b.subject_public_key.data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_counts_from_the_first_set_bit() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x7f, 0x00]), 15);
        assert_eq!(modulus_bits(&[0, 0]), 0);
    }

    #[test]
    fn generated_keys_are_pkcs8_and_reload_with_their_type() {
        for k in [KeyType::P256, KeyType::P384, KeyType::Ed25519] {
            let pair = k.generate().expect("generate");
            let (again, kt) = load_pkcs8(pair.serialized_der(), "key").expect("reload");
            assert_eq!(kt, k);
            assert!(key_matches_spki(&again, &pair.subject_public_key_info()));
        }
        let a = KeyType::P256.generate().expect("a");
        let b = KeyType::P256.generate().expect("b");
        assert!(!key_matches_spki(&a, &b.subject_public_key_info()));
    }
}
