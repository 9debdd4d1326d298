//! Castellan's domain, free of I/O.
//!
//! This crate generates and holds signing keys, builds the key ring and its JWKS, signs access tokens,
//! seals secrets with envelope encryption and makes client secrets. Time comes in through [`Clock`],
//! randomness through `aws_lc_rs::rand::SecureRandom`.
//!
//! It does **not** open files, sockets or databases, read the environment or log: callers do that.
//! Cryptography comes from aws-lc-rs; nothing here implements a primitive.
#![forbid(unsafe_code)]

pub mod clock;
pub mod envelope;
pub mod error;
pub mod jwt;
pub mod keyring;
pub mod keys;
pub mod secret;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
