//! Verify Castellan access tokens in your own service.
//!
//! Castellan issues RFC 9068 access tokens (compact JWS, header `{alg, kid, typ: "at+jwt"}`) signed
//! by a key ring it publishes at `/.well-known/jwks.json`. This crate gives a service what it needs to
//! accept them:
//!
//! - a [`Verifier`] that fetches that JWKS, caches the keys (parsed once) for the response's
//!   `Cache-Control: max-age` within bounds you set (60 s to 24 h by default), refreshes them in a
//!   background task, and keeps the last good keys when a fetch fails;
//! - on a token whose `kid` is not cached, one refetch shared by all concurrent callers, and then no
//!   other for a cool-down (30 s by default), so tokens with invented kids cannot cause a fetch storm;
//! - the checks: size (8 KiB by default, before any parsing), `crit` (refused: no extension is
//!   understood), `alg` (only RS256, ES256 or EdDSA, and exactly the `alg` the key's JWK declares,
//!   which must fit its `kty`/`crv`: never `none`, never HMAC), `typ` (by default only `at+jwt` or
//!   `application/at+jwt`, case-insensitively, as RFC 9068 §4 requires; `JWT` only if you opt in
//!   with [`VerifierBuilder::accepted_types`]), the signature, then `iss`, `aud`, `exp` and `nbf`
//!   with a leeway (60 s by default) against an injectable wall [`Clock`]. Cache times and the
//!   cool-down run on a monotonic clock instead, so a wall-clock step does not affect them;
//! - [`Claims`] with the registered claims typed and the rest as JSON;
//! - with the `axum` feature (on by default), [`VerifyLayer`]: a tower layer that puts the
//!   [`Claims`] into the request extensions or answers 401 with an RFC 6750 `WWW-Authenticate`
//!   challenge.
//!
//! The header and claims are decoded by jsonwebtoken; signatures are checked by aws-lc-rs with the
//! public key parsed once per kid; nothing here parses JWTs or does cryptography by hand. Fetch failures and refused JWKS entries are logged through `tracing`.
//!
//! With a warm cache a verification runs at 95–100 % of the raw signature verification of the same
//! key (see `benches/verify.rs`).
//!
//! # What it does not do
//!
//! - It never uses a key from the token itself: the `jku`, `x5u`, `jwk` and `x5c` headers are ignored,
//!   and only the configured JWKS URL is ever fetched. Plain `http://` is refused for hosts other than
//!   loopback unless you opt in, and a loopback URL is fetched directly, never through a proxy
//!   named in `HTTP_PROXY`/`ALL_PROXY`. For a Castellan serving HTTPS with a certificate from its own CA
//!   (`--tls-self-issued`), give its `root.pem` to [`VerifierBuilder::ca_pem`].
//! - No scope or other authorization decisions: [`Claims::has_scope`] helps, the policy is yours.
//! - No revocation or introspection (RFC 7662): a token is good until `exp`. Keep token lifetimes
//!   short.
//! - No JWE (encrypted tokens), no unsecured JWTs, no HMAC, no detached or unencoded payloads, no
//!   nested tokens.
//! - No `iat` limits, `jti` replay cache, or `sub`/`client_id` checks.
//! - It does not forget keys on its own: if the JWKS cannot be fetched, the keys of the last good
//!   fetch keep verifying until a fetch succeeds. A JWKS document with no usable key counts as a
//!   failed fetch.
//! - Keys without a `kid` or an `alg` in the JWKS are skipped (Castellan always publishes both).
//!
//! # Example
//!
//! `examples/service.rs` is an axum service protecting `/hello`:
//! `ISSUER=http://127.0.0.1:8270 AUDIENCE=http://127.0.0.1:8270
//! JWKS_URL=http://127.0.0.1:8270/.well-known/jwks.json cargo run -p castellan-verify --example service`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod claims;
mod clock;
mod error;
mod fetch;
mod jwks;
#[cfg(feature = "axum")]
mod layer;
mod verifier;

pub use claims::Claims;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
#[cfg(feature = "http")]
pub use fetch::HttpFetcher;
pub use fetch::{BoxFuture, FetchError, Fetched, JwksFetcher, parse_max_age};
#[cfg(feature = "axum")]
pub use layer::{RequireToken, VerifyLayer, error_description};
pub use verifier::{
    DEFAULT_CACHE, DEFAULT_COOLDOWN, DEFAULT_FETCH_TIMEOUT, DEFAULT_LEEWAY, DEFAULT_MAX_CACHE,
    DEFAULT_MAX_TOKEN_SIZE, DEFAULT_MIN_CACHE, Verifier, VerifierBuilder,
};
