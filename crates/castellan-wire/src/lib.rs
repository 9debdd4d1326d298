//! Castellan's `/v1` wire: the JSON bodies the server reads and answers with, and the credential file.
//!
//! The server (`castellan-server`) serializes and deserializes these very types, so what the CLI
//! and the agent send and read cannot drift from what the server accepts and answers. Field order
//! follows the bytes earlier versions put on the wire (JSON objects built as sorted maps), so the
//! JSON itself does not change.
//!
//! With the `client` feature, [`client`] is the HTTP client the CLI and the agent share: the token
//! fetch, the credential file, answers read within a size bound, API errors. Without it this crate
//! has no I/O beyond reading a credential file, and links neither a database nor a web framework.
#![forbid(unsafe_code)]

pub mod clients;
pub mod credential;
pub mod pki;
pub mod secrets;
pub mod sign;
pub mod token;
pub mod users;

#[cfg(feature = "client")]
pub mod client;

pub use clients::{ClientInfo, ClientList, CreatedClient, NewClient};
pub use credential::{CredentialError, CredentialFile};
pub use pki::{CaJson, CertList, CertSummary, SetJson, SignBody};
pub use secrets::{PutSecret, SecretJson, SecretMeta};
pub use token::TokenAnswer;

/// A body that is well-formed JSON but says something invalid (the message says what).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}
