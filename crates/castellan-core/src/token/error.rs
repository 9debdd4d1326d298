//! The errors of the token module.

use super::rotation::PolicyError;

/// Errors from token work: signing keys, the key ring and signing access tokens. None of them carries
/// key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// A random number or a key could not be generated.
    #[error("key generation failed")]
    KeyGeneration,
    /// Stored or supplied key bytes do not form a key of the expected kind.
    #[error("the key is not a valid {0} private key")]
    InvalidKey(&'static str),
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Signing,
    /// An unknown algorithm or key type name.
    #[error("unknown {kind} `{value}` (expected one of: {expected})")]
    UnknownName {
        /// What was being named.
        kind: &'static str,
        /// What was given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The key type cannot be used with the algorithm.
    #[error("key type {key_type} cannot sign {alg}")]
    KeyTypeMismatch {
        /// The algorithm.
        alg: &'static str,
        /// The key type.
        key_type: &'static str,
    },
    /// The key ring has no key whose activation time has come.
    #[error("the key ring has no active signing key")]
    NoActiveKey,
    /// JSON encoding failed.
    #[error("encoding failed: {0}")]
    Encoding(String),
    /// The rotation settings cannot work.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}
