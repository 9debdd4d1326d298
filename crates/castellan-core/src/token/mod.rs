//! Access tokens, free of I/O: signing keys and their JWKs, the key ring and its JWKS, scheduled
//! rotation, and signing access tokens as JWTs.
//!
//! A [`SigningKey`] holds a key pair parsed once ([`keys`]); a [`KeyRing`] holds every published key
//! with its schedule and picks the one that signs at a given moment ([`keyring`]); [`rotation`] decides,
//! as pure functions of the schedule and `now`, when a next key must be published and when an old one
//! leaves the JWKS; [`sign_access_token`] encodes and signs the claims ([`jwt`]).

mod error;
pub mod jwt;
pub mod keyring;
pub mod keys;
pub mod rotation;

pub use error::TokenError;
pub use jwt::{AccessClaims, UserAccessClaims, sign_access_token, sign_jwt};
pub use keyring::{KeyRing, KeyState, RingKey};
pub use keys::{Alg, Jwk, SigningKey, thumbprint};
pub use rotation::{Policy, PolicyError};

/// True for an RFC 6749 scope-token.
pub fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}
