//! The key ring: every published key with its schedule, the choice of the signing key, and the JWKS.
//!
//! Every replica builds the same ring from the same rows, so every replica picks the same signing key
//! (the latest `activate_at <= now`, ties broken by kid) and serves byte-identical JWKS bytes.

use std::sync::Arc;

use serde::Serialize;

use super::error::TokenError;
use super::keys::{Jwk, SigningKey};

/// Where a key stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signing.
    Current,
    /// No longer signing, still published so the tokens it signed verify.
    Retired,
}

/// A key with its schedule.
#[derive(Debug, Clone)]
pub struct RingKey {
    /// The parsed key.
    pub key: Arc<SigningKey>,
    /// When it starts signing (seconds since the epoch).
    pub activate_at: i64,
    /// When it leaves the JWKS, if scheduled.
    pub remove_at: Option<i64>,
}

/// The loaded key ring.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<RingKey>,
    jwks: Arc<[u8]>,
    fingerprint: String,
}

#[derive(Serialize)]
struct Jwks<'a> {
    keys: Vec<&'a Jwk>,
}

impl KeyRing {
    /// Builds a ring from its keys (any order).
    pub fn new(mut keys: Vec<RingKey>) -> Result<Self, TokenError> {
        keys.sort_by(|a, b| a.key.kid().cmp(b.key.kid()));
        keys.dedup_by(|a, b| a.key.kid() == b.key.kid());
        let jwks = serde_json::to_vec(&Jwks {
            keys: keys.iter().map(|k| k.key.jwk()).collect(),
        })
        .map_err(|e| TokenError::Encoding(e.to_string()))?;
        let fingerprint =
            hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &jwks).as_ref());
        Ok(Self {
            keys,
            jwks: jwks.into(),
            fingerprint,
        })
    }

    /// True when the ring holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, sorted by kid.
    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// The signing key at `now`: the latest `activate_at <= now`, ties broken by the greater kid.
    pub fn signing_key(&self, now: i64) -> Result<&RingKey, TokenError> {
        self.keys
            .iter()
            .filter(|k| k.activate_at <= now)
            .max_by(|a, b| {
                a.activate_at
                    .cmp(&b.activate_at)
                    .then_with(|| a.key.kid().cmp(b.key.kid()))
            })
            .ok_or(TokenError::NoActiveKey)
    }

    /// The state of the key `kid` at `now`, or `None` if the ring does not hold it.
    pub fn state(&self, kid: &str, now: i64) -> Option<KeyState> {
        let k = self.keys.iter().find(|k| k.key.kid() == kid)?;
        if k.activate_at > now {
            return Some(KeyState::Next);
        }
        match self.signing_key(now) {
            Ok(current) if current.key.kid() == kid => Some(KeyState::Current),
            _ => Some(KeyState::Retired),
        }
    }

    /// Looks a key up by kid.
    pub fn get(&self, kid: &str) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.key.kid() == kid)
    }

    /// The JWKS document (`{"keys":[...]}`), sorted by kid.
    pub fn jwks(&self) -> &Arc<[u8]> {
        &self.jwks
    }

    /// SHA-256 of the JWKS bytes, hex: equal on every replica that loaded the same ring.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Alg;

    fn key(activate_at: i64) -> RingKey {
        let (k, _) = SigningKey::generate(Alg::EdDSA, None).expect("key");
        RingKey {
            key: Arc::new(k),
            activate_at,
            remove_at: None,
        }
    }

    #[test]
    fn signing_key_is_latest_active_and_states_follow() {
        let (a, b, c) = (key(100), key(200), key(300));
        let (ka, kb, kc) = (
            a.key.kid().to_owned(),
            b.key.kid().to_owned(),
            c.key.kid().to_owned(),
        );
        let ring = KeyRing::new(vec![c, a, b]).expect("ring");
        assert!(ring.signing_key(99).is_err());
        assert_eq!(ring.signing_key(150).expect("k").key.kid(), ka);
        assert_eq!(ring.signing_key(250).expect("k").key.kid(), kb);
        assert_eq!(ring.state(&ka, 250), Some(KeyState::Retired));
        assert_eq!(ring.state(&kb, 250), Some(KeyState::Current));
        assert_eq!(ring.state(&kc, 250), Some(KeyState::Next));
        assert_eq!(ring.state(&kc, 300), Some(KeyState::Current));
    }

    #[test]
    fn jwks_is_independent_of_input_order() {
        let (a, b) = (key(1), key(2));
        let r1 = KeyRing::new(vec![a.clone(), b.clone()]).expect("r1");
        let r2 = KeyRing::new(vec![b, a]).expect("r2");
        assert_eq!(r1.jwks(), r2.jwks());
        assert_eq!(r1.fingerprint(), r2.fingerprint());
        let v: serde_json::Value = serde_json::from_slice(r1.jwks()).expect("json");
        let kids: Vec<&str> = v["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid"))
            .collect();
        let mut sorted = kids.clone();
        sorted.sort();
        assert_eq!(kids, sorted);
    }
}
