//! The one error type of the core: the errors of envelope encryption and secrets, and one variant per
//! capability that has its own error type ([`TokenError`], [`PkiError`]).
//!
//! A capability's functions return its own type; `?` turns it into [`Error`] where a caller wants one
//! type for all of the core. Every message is the capability's own (the wrapping variants are
//! transparent).

pub use crate::pki::PkiError;
pub use crate::token::TokenError;

/// Errors from the core. None of them carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A random number or a key could not be generated.
    #[error("key generation failed")]
    KeyGeneration,
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
    /// Token signing keys, the key ring or token signing failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A certificate request or CA was refused, or certificate work failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

impl From<crate::token::PolicyError> for Error {
    fn from(e: crate::token::PolicyError) -> Self {
        Error::Token(e.into())
    }
}
