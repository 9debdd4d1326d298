//! Castellan's domain, free of I/O.
//!
//! This crate generates and holds signing keys, builds the key ring and its JWKS, and signs access
//! tokens ([`token`]); seals secrets with envelope encryption (and holds the secrets store's rules,
//! [`secret_store`]), makes client secrets, and runs the certificate authority ([`pki`]), and holds the rules people sign in by ([`signin`]). Certificate
//! and token keys share one [`KeyType`]; every error of the core is an [`Error`] (each capability
//! returns its own, [`token::TokenError`] and [`pki::PkiError`], which `?` turns into one). Time comes
//! in through [`Clock`] (or a `now` parameter), randomness through `aws_lc_rs::rand::SecureRandom`.
//!
//! It does **not** open files, sockets or databases, read the environment or log: callers do that.
//! Cryptography comes from aws-lc-rs; nothing here implements a primitive.
#![forbid(unsafe_code)]

pub mod audit;
pub mod clock;
pub mod doctor;
pub mod duration;
pub mod envelope;
pub mod error;
mod key_type;
pub mod pki;
pub mod secret;
pub mod secret_store;
pub mod signin;
pub mod token;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use key_type::KeyType;
