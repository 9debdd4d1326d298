//! Client ids and secrets.
//!
//! Secrets are 256-bit random values shown once. The store keeps SHA-256 of the secret: right for a
//! high-entropy generated secret (a slow password hash would only cap token throughput), and compared
//! in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::Error;

/// Random bytes, hex-encoded, after a prefix: for ids that are not secret.
pub fn random_id(prefix: &str, bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| Error::KeyGeneration)?;
    Ok(format!("{prefix}{}", hex::encode(buf)))
}

/// A new client secret (32 random bytes, base64url, 43 characters).
pub fn generate_secret() -> Result<Zeroizing<String>, Error> {
    let mut buf = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(buf.as_mut()).map_err(|_| Error::KeyGeneration)?;
    Ok(Zeroizing::new(B64.encode(buf.as_ref())))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Constant-time check of a presented secret against its stored hash.
pub fn verify_secret(presented: &str, stored_hash: &[u8]) -> bool {
    let h = hash_secret(presented);
    h.len() == stored_hash.len() && bool::from(h.as_slice().ct_eq(stored_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_themselves() {
        let s = generate_secret().expect("secret");
        assert_eq!(s.len(), 43);
        let h = hash_secret(&s);
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret("wrong", &h));
        assert!(!verify_secret(&s, &h[..31]));
        assert_ne!(generate_secret().expect("s2").as_str(), s.as_str());
    }
}
