//! Castellan's service layer and HTTP API.
//!
//! The use cases sit below HTTP, one module each ([`init`], [`clients`], [`tokens`], [`keys`],
//! [`pki`], [`secrets`], [`data_keys`]), all failing with one [`error::ServiceError`]; the CLI calls
//! them on the store directly. [`state::AppState`] is one process's memory of the store (key ring,
//! clients, CA) and its background jobs. [`http::router`] builds the axum router, one module per
//! area; tests drive it with `oneshot` without a socket. [`listen`] and [`tls`] serve it.
//!
//! This crate does not parse command lines or choose where the store lives; the binary does.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod audit;
pub mod cert_names;
pub mod client_policies;
pub mod clients;
pub mod config;
pub mod data_keys;
pub mod emergency;
pub mod error;
pub mod http;
pub mod init;
pub mod keys;
pub mod listen;
pub mod metrics;
pub(crate) mod own_tokens;
pub mod pki;
pub mod secrets;
pub mod signin;
pub mod state;
pub mod tls;
pub mod tokens;
pub mod users;
pub mod vault_layer;
pub mod vault_tokens;
