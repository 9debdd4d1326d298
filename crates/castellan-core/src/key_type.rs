//! The one key type: of a certificate ([`crate::pki`]) or of a token signing key ([`crate::token`]).
//!
//! Generating and recognising certificate keys lives in `pki::key`; which key type signs which token
//! algorithm, and the names token key types are given by, in `token::keys`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pki::PkiError;

/// The type of a key. P-256 is the default.
///
/// Names are `p-256`, `p-384`, `ed25519`, `rsa-2048`, `rsa-3072` and `rsa-4096` (case-insensitive).
/// Certificates allow every type; token signing keys all but P-384, and their names are read by
/// [`KeyType::parse_signing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum KeyType {
    /// ECDSA on NIST P-256, signing with SHA-256 (the default).
    #[default]
    P256,
    /// ECDSA on NIST P-384, signing with SHA-384.
    P384,
    /// Ed25519. Fine for TLS 1.3 between modern peers; some older clients do not accept it.
    Ed25519,
    /// RSA with a 2048-bit modulus, signing with PKCS#1 v1.5 and SHA-256. Generation takes ≈60 ms.
    Rsa2048,
    /// RSA with a 3072-bit modulus. Generation is slow (hundreds of ms).
    Rsa3072,
    /// RSA with a 4096-bit modulus. Generation is slow (up to seconds).
    Rsa4096,
}

impl KeyType {
    /// Every key type, in a stable order.
    pub const ALL: [KeyType; 6] = [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// The command-line and config name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::P256 => "p-256",
            KeyType::P384 => "p-384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    /// Whether this is an RSA key (its certificates also get keyUsage keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate key type's name (token signing key types: [`KeyType::parse_signing`]).
impl std::str::FromStr for KeyType {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, PkiError> {
        let lower = s.trim().to_ascii_lowercase();
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == lower)
            .ok_or_else(|| PkiError::UnknownKeyType {
                value: s.to_owned(),
            })
    }
}

impl Serialize for KeyType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for k in KeyType::ALL {
            assert_eq!(k.as_str().parse::<KeyType>().expect("parse"), k);
            assert_eq!(serde_json::to_string(&k).expect("ser"), format!("\"{k}\""));
        }
        assert_eq!("P-256".parse::<KeyType>().expect("case"), KeyType::P256);
        assert!(matches!(
            "rsa-1024".parse::<KeyType>(),
            Err(PkiError::UnknownKeyType { .. })
        ));
        assert!(serde_json::from_str::<KeyType>("\"dsa\"").is_err());
        assert_eq!(KeyType::default(), KeyType::P256);
    }
}
