//! Signed checkpoints: `(replica, seq, hash, at_ms)` as a compact JWS by the key ring's signing key
//! (`typ` `castellan-audit-checkpoint+jwt`), checked against the store's JWKS by `audit verify`.

use castellan_core::token::SigningKey;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// The `typ` of a checkpoint.
pub const TYP: &str = "castellan-audit-checkpoint+jwt";

/// What a checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointClaims {
    /// The chain.
    pub replica: String,
    /// The seq pinned.
    pub seq: i64,
    /// The hash of that event.
    pub hash: String,
    /// When it was signed, milliseconds since the epoch.
    pub at_ms: i64,
}

/// Signs `claims`.
pub fn sign(key: &SigningKey, claims: &CheckpointClaims) -> Option<String> {
    castellan_core::token::sign_jwt(key, TYP, claims).ok()
}

/// What checking a checkpoint's signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// Signed by this key of the JWKS, over these claims.
    Valid(String, CheckpointClaims),
    /// Signed by a key no longer published (removed after its retirement): not checkable.
    UnknownKey(String),
    /// Not a valid signature of a published key, or not a checkpoint.
    Invalid(String),
}

/// Checks `jws` against the published keys.
pub fn check(jws: &str, jwks: &[u8]) -> Signature {
    let Ok(header) = jsonwebtoken::decode_header(jws) else {
        return Signature::Invalid("not a JWS".into());
    };
    if header.typ.as_deref() != Some(TYP) {
        return Signature::Invalid("not an audit checkpoint".into());
    }
    let kid = header.kid.unwrap_or_default();
    let Ok(set) = serde_json::from_slice::<JwkSet>(jwks) else {
        return Signature::Invalid("the JWKS cannot be read".into());
    };
    let Some(jwk) = set.find(&kid) else {
        return Signature::UnknownKey(kid);
    };
    let Ok(dk) = DecodingKey::from_jwk(jwk) else {
        return Signature::Invalid(format!("key {kid} cannot be used"));
    };
    let mut v = Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    match jsonwebtoken::decode::<CheckpointClaims>(jws, &dk, &v) {
        Ok(d) => Signature::Valid(kid, d.claims),
        Err(_) => Signature::Invalid(format!("the signature by {kid} does not verify")),
    }
}
