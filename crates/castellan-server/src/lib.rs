//! Castellan's service layer and HTTP API.
//!
//! [`app::router`] builds the axum router from an [`app::AppState`]; tests drive it with `oneshot`
//! without a socket. [`service`] holds one function per use case, shared with the CLI.
//!
//! This crate does not parse command lines or choose where the store lives; the binary does.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod files;
pub mod keys;
pub mod listen;
pub mod metrics;
pub mod pki;
pub mod secrets;
pub mod service;
pub mod tls;
