//! Castellan's domain, free of I/O.
//!
//! This crate generates and holds signing keys, builds the key ring and its JWKS, signs access tokens,
//! seals secrets with envelope encryption (and holds the secrets store's rules, [`secret_store`]), makes client secrets, and runs the certificate authority
//! ([`pki`]). Time comes in through [`Clock`] (or a `now` parameter), randomness through
//! `aws_lc_rs::rand::SecureRandom`.
//!
//! It does **not** open files, sockets or databases, read the environment or log: callers do that.
//! Cryptography comes from aws-lc-rs; nothing here implements a primitive.
#![forbid(unsafe_code)]

pub mod clock;
pub mod doctor;
pub mod duration;
pub mod envelope;
pub mod error;
pub mod jwt;
pub mod keyring;
pub mod keys;
pub mod pki;
pub mod rotation;
pub mod secret;
pub mod secret_store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
