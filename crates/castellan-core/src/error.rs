//! The one error type of the core.

/// Errors from the core. None of them carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A random number or a key could not be generated.
    #[error("key generation failed")]
    KeyGeneration,
    /// Stored or supplied key bytes do not form a key of the expected kind.
    #[error("the key is not a valid {0} private key")]
    InvalidKey(&'static str),
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Signing,
    /// A sealed value could not be opened: wrong master key, wrong data key, or tampered bytes.
    #[error("decryption failed: the value was sealed under another key or has been altered")]
    Decrypt,
    /// Sealing failed inside the crypto library.
    #[error("encryption failed")]
    Encrypt,
    /// The master key file does not hold 32 base64-encoded bytes.
    #[error(
        "the master key must be 32 random bytes, base64-encoded (for example `openssl rand -base64 32`)"
    )]
    MasterKeyFormat,
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
}
