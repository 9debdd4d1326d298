//! The service layer's one error type: what a use case can fail with, mapped to HTTP in one place
//! (`http::error`) and printed as is by the CLI.

use castellan_store::StoreError;

/// Errors of the service layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The store holds no key ring.
    #[error(
        "the store holds no key ring: run `castellan init` against this store first (or `castellan serve --dev` for a throw-away embedded setup)"
    )]
    NotInitialized,
    /// The master key is not the one the store was initialized with.
    #[error(
        "the master key does not match the one this store was initialized with (check value {given}, store expects another); give every replica the same master key file"
    )]
    MasterKeyMismatch {
        /// The check value of the key given.
        given: String,
    },
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique value is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The caller may not do this (its scopes allow the call, but not on this object).
    #[error("{0}")]
    Forbidden(String),
    /// The state changed since the caller read it (a check-and-set failed).
    #[error("{0}")]
    Precondition(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The core failed (key generation, decryption).
    #[error(transparent)]
    Core(castellan_core::Error),
    /// A certificate request or CA was refused, or issuance failed.
    #[error(transparent)]
    Pki(#[from] castellan_core::pki::PkiError),
}

impl From<castellan_core::Error> for ServiceError {
    fn from(e: castellan_core::Error) -> Self {
        match e {
            castellan_core::Error::Pki(p) => ServiceError::Pki(p),
            other => ServiceError::Core(other),
        }
    }
}

impl From<castellan_core::token::TokenError> for ServiceError {
    fn from(e: castellan_core::token::TokenError) -> Self {
        ServiceError::Core(e.into())
    }
}

impl From<castellan_wire::Invalid> for ServiceError {
    fn from(e: castellan_wire::Invalid) -> Self {
        ServiceError::Invalid(e.0)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ServiceError::Conflict(what),
            other => ServiceError::Store(other),
        }
    }
}
