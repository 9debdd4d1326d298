//! Token signing keys: generation, parsing from PKCS#8, public JWKs and RFC 7638 thumbprints.
//!
//! A [`SigningKey`] holds a key pair parsed once; signing never parses key bytes again.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::TokenError;
use crate::key_type::KeyType;

/// A JWS signing algorithm Castellan issues tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the default: every verifier supports it).
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Alg {
    /// All algorithms, in a stable order.
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The key type used when none is given.
    pub fn default_key_type(self) -> KeyType {
        match self {
            Alg::RS256 => KeyType::Rsa2048,
            Alg::ES256 => KeyType::P256,
            Alg::EdDSA => KeyType::Ed25519,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Alg {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        match s {
            "RS256" => Ok(Alg::RS256),
            "ES256" => Ok(Alg::ES256),
            "EdDSA" => Ok(Alg::EdDSA),
            _ => Err(TokenError::UnknownName {
                kind: "algorithm",
                value: s.to_owned(),
                expected: "RS256, ES256, EdDSA",
            }),
        }
    }
}

impl KeyType {
    /// Reads the name of a token signing key type: `rsa-2048`, `rsa-3072`, `rsa-4096`, `p-256` (or
    /// `p256`) or `ed25519`, case-insensitive. P-384 signs no token algorithm and is refused here (a
    /// certificate key type's name is read by [`str::parse`]).
    pub fn parse_signing(s: &str) -> Result<Self, TokenError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa-2048" => Ok(KeyType::Rsa2048),
            "rsa-3072" => Ok(KeyType::Rsa3072),
            "rsa-4096" => Ok(KeyType::Rsa4096),
            "p-256" | "p256" => Ok(KeyType::P256),
            "ed25519" => Ok(KeyType::Ed25519),
            _ => Err(TokenError::UnknownName {
                kind: "key type",
                value: s.to_owned(),
                expected: "rsa-2048, rsa-3072, rsa-4096, p-256, ed25519",
            }),
        }
    }

    /// Whether a key of this type can sign `alg`.
    fn fits(self, alg: Alg) -> bool {
        matches!(
            (alg, self),
            (
                Alg::RS256,
                KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096
            ) | (Alg::ES256, KeyType::P256)
                | (Alg::EdDSA, KeyType::Ed25519)
        )
    }
}

/// A public key as a JWK (RFC 7517), with the members Castellan publishes.
///
/// Field order is fixed, so the serialized JWKS is byte-identical wherever it is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// The one algorithm this key signs.
    pub alg: String,
    /// Curve (EC, OKP).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    /// RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
    /// EC x coordinate, or the OKP public key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A parsed private key with its public JWK. `Debug` shows the kid only.
pub struct SigningKey {
    alg: Alg,
    pair: Pair,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a key for `alg`. Returns the key and its PKCS#8 DER (to be sealed before storing).
    pub fn generate(
        alg: Alg,
        key_type: Option<KeyType>,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), TokenError> {
        let key_type = key_type.unwrap_or(alg.default_key_type());
        let mismatch = TokenError::KeyTypeMismatch {
            alg: alg.as_str(),
            key_type: key_type.as_str(),
        };
        if !key_type.fits(alg) {
            return Err(mismatch);
        }
        let der: Zeroizing<Vec<u8>> = match key_type {
            // P-384 fits no algorithm (refused above).
            KeyType::P384 => return Err(mismatch),
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let size = match key_type {
                    KeyType::Rsa3072 => KeySize::Rsa3072,
                    KeyType::Rsa4096 => KeySize::Rsa4096,
                    _ => KeySize::Rsa2048,
                };
                let kp = RsaKeyPair::generate(size).map_err(|_| TokenError::KeyGeneration)?;
                Zeroizing::new(
                    kp.as_der()
                        .map_err(|_| TokenError::KeyGeneration)?
                        .as_ref()
                        .to_vec(),
                )
            }
            KeyType::P256 => {
                let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| TokenError::KeyGeneration)?;
                Zeroizing::new(
                    kp.to_pkcs8v1()
                        .map_err(|_| TokenError::KeyGeneration)?
                        .as_ref()
                        .to_vec(),
                )
            }
            KeyType::Ed25519 => {
                let kp = Ed25519KeyPair::generate().map_err(|_| TokenError::KeyGeneration)?;
                Zeroizing::new(
                    kp.to_pkcs8v1()
                        .map_err(|_| TokenError::KeyGeneration)?
                        .as_ref()
                        .to_vec(),
                )
            }
        };
        let key = Self::from_pkcs8(alg, &der)?;
        Ok((key, der))
    }

    /// Parses a PKCS#8 private key for `alg`.
    pub fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<Self, TokenError> {
        let (pair, jwk) = match alg {
            Alg::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(der).map_err(|_| TokenError::InvalidKey("RSA"))?;
                if kp.public_modulus_len() < 256 {
                    return Err(TokenError::InvalidKey("RSA (at least 2048 bits)"));
                }
                let public = kp.public_key();
                let n = B64.encode(public.modulus().big_endian_without_leading_zero());
                let e = B64.encode(public.exponent().big_endian_without_leading_zero());
                (
                    Pair::Rsa(kp),
                    jwk_with(alg, "RSA", None, Some(n), Some(e), None, None),
                )
            }
            Alg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| TokenError::InvalidKey("P-256"))?;
                let point = kp.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(TokenError::InvalidKey("P-256"));
                }
                let x = B64.encode(&point[1..33]);
                let y = B64.encode(&point[33..65]);
                (
                    Pair::Ec(kp),
                    jwk_with(alg, "EC", Some("P-256"), None, None, Some(x), Some(y)),
                )
            }
            Alg::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|_| TokenError::InvalidKey("Ed25519"))?;
                let x = B64.encode(kp.public_key().as_ref());
                (
                    Pair::Ed(kp),
                    jwk_with(alg, "OKP", Some("Ed25519"), None, None, Some(x), None),
                )
            }
        };
        Ok(Self { alg, pair, jwk })
    }

    /// The same key published and signing under another key id: an imported legacy key keeps the
    /// kid its old service put in its tokens (issue 18), so those tokens keep verifying. `kid` is
    /// 1-128 printable ASCII characters without spaces or quotes.
    pub fn with_kid(mut self, kid: &str) -> Result<Self, TokenError> {
        if !valid_kid(kid) {
            return Err(TokenError::InvalidKey(
                "key id (1-128 printable ASCII characters, no spaces, quotes or backslashes)",
            ));
        }
        self.jwk.kid = kid.to_owned();
        Ok(self)
    }

    /// The algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `message` (the JWS signing input) and returns the raw JWS signature bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        match &self.pair {
            Pair::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(
                    &RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .map_err(|_| TokenError::Signing)?;
                Ok(sig)
            }
            Pair::Ec(kp) => kp
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| TokenError::Signing),
            Pair::Ed(kp) => Ok(kp.sign(message).as_ref().to_vec()),
        }
    }
}

fn jwk_with(
    alg: Alg,
    kty: &str,
    crv: Option<&str>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
) -> Jwk {
    let mut jwk = Jwk {
        kty: kty.to_owned(),
        kid: String::new(),
        use_: "sig".to_owned(),
        alg: alg.as_str().to_owned(),
        crv: crv.map(str::to_owned),
        n,
        e,
        x,
        y,
    };
    jwk.kid = thumbprint(&jwk);
    jwk
}

/// Whether `kid` may name a key: 1-128 printable ASCII characters without spaces, quotes or
/// backslashes (what a JOSE header and a JWKS carry without surprises).
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 128
        && kid
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// The RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order, base64url.
pub fn thumbprint(jwk: &Jwk) -> String {
    // serde_json::json! sorts object keys (BTreeMap) and escapes strings: exactly RFC 7638's form.
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let canonical = match jwk.kty.as_str() {
        "RSA" => serde_json::json!({"e": s(&jwk.e), "kty": "RSA", "n": s(&jwk.n)}),
        "EC" => {
            serde_json::json!({"crv": s(&jwk.crv), "kty": "EC", "x": s(&jwk.x), "y": s(&jwk.y)})
        }
        _ => serde_json::json!({"crv": s(&jwk.crv), "kty": jwk.kty, "x": s(&jwk.x)}),
    };
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
    B64.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // The example key of RFC 7638 §3.1 and its published thumbprint.
        let jwk = Jwk {
            kty: "RSA".into(),
            kid: String::new(),
            use_: "sig".into(),
            alg: "RS256".into(),
            crv: None,
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            e: Some("AQAB".into()),
            x: None,
            y: None,
        };
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_have_thumbprint_kids_and_reparse() {
        for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
            let (key, der) = SigningKey::generate(alg, None).expect("generate");
            assert_eq!(key.kid(), thumbprint(key.jwk()));
            let again = SigningKey::from_pkcs8(alg, &der).expect("reparse");
            assert_eq!(again.jwk(), key.jwk());
            assert!(!format!("{key:?}").contains(&hex::encode(&der[..16])));
        }
    }

    #[test]
    fn key_type_must_fit_alg() {
        assert!(matches!(
            SigningKey::generate(Alg::ES256, Some(KeyType::Rsa2048)),
            Err(TokenError::KeyTypeMismatch { .. })
        ));
        assert!(KeyType::parse_signing("rsa-1024").is_err());
        assert!("HS256".parse::<Alg>().is_err());
    }
}
