//! Verifier tests: happy paths, hostile tokens and JWKS, the cache, the tower layer, proxies.
//!
//! One test binary for the crate (one link instead of one per file); each module is one area.

mod common;

mod cache;
mod happy;
mod hostile;
mod layer;
mod proxy;
mod robustness;
