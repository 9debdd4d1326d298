//! A JWKS document turned into verification keys, each parsed once.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::error::shorten;

/// The algorithms this crate verifies, each tied to exactly one key type. Everything else (`none`,
/// every `HS*`, algorithms Castellan does not issue) is refused before any key is looked up.
pub(crate) fn supported(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA)
}

/// One key ready to verify: the algorithm its JWK declares (the only one a token may use with it)
/// and the public key parsed once by aws-lc-rs for that algorithm (never again per token).
pub(crate) struct CachedKey {
    pub(crate) alg: Algorithm,
    pub(crate) key: ParsedPublicKey,
}

/// The keys of one JWKS document, by kid.
pub(crate) struct KeySet {
    pub(crate) keys: HashMap<String, Arc<CachedKey>>,
    /// When the set goes stale (monotonic: a wall-clock step must not extend it).
    pub(crate) expires_at: tokio::time::Instant,
    pub(crate) etag: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    /// Present only in a private JWK: a JWKS that publishes one has leaked its key.
    d: Option<serde_json::Value>,
}

/// Parses a JWKS body. Keys this crate cannot or must not use are skipped with a log line: no kid,
/// `use` other than `sig`, `key_ops` without `verify`, no `alg` or an unsupported one, an `alg` that
/// does not fit the `kty`/`crv`, wrong key sizes, private key material, a repeated kid. An error if
/// no usable key remains (the caller then keeps the keys it had).
pub(crate) fn parse(body: &[u8]) -> Result<HashMap<String, Arc<CachedKey>>, String> {
    let raw: RawJwks =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::with_capacity(raw.keys.len());
    for value in raw.keys {
        let jwk: RawJwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::debug!("JWKS: skipping a key that is not a JWK: {e}");
                continue;
            }
        };
        let kid = jwk.kid.clone().unwrap_or_default();
        match usable(&jwk) {
            Ok((alg, key)) => {
                if keys.contains_key(&kid) {
                    tracing::warn!(kid = %shorten(&kid), "JWKS: repeated kid, keeping the first");
                    continue;
                }
                keys.insert(kid, Arc::new(CachedKey { alg, key }));
            }
            Err(why) => tracing::debug!(kid = %shorten(&kid), "JWKS: skipping key: {why}"),
        }
    }
    if keys.is_empty() {
        return Err("the JWKS holds no usable signing key".to_owned());
    }
    Ok(keys)
}

fn usable(jwk: &RawJwk) -> Result<(Algorithm, ParsedPublicKey), &'static str> {
    if jwk.kid.as_deref().is_none_or(str::is_empty) {
        return Err("no kid");
    }
    if jwk.d.is_some() {
        tracing::warn!("JWKS publishes private key material; that key is refused");
        return Err("private key material");
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        return Err("key_ops lacks verify");
    }
    let alg: Algorithm = jwk
        .alg
        .as_deref()
        .ok_or("no alg")?
        .parse()
        .map_err(|_| "unknown alg")?;
    let bytes = |v: &Option<String>| -> Result<Vec<u8>, &'static str> {
        B64.decode(v.as_deref().ok_or("missing key parameter")?)
            .map_err(|_| "key parameter is not base64url")
    };
    let key = match (alg, jwk.kty.as_str(), jwk.crv.as_deref()) {
        (Algorithm::RS256, "RSA", _) => {
            // aws-lc verifies RSA from 2048 to 8192 bits; refuse other sizes up front.
            let (n, e) = (bytes(&jwk.n)?, bytes(&jwk.e)?);
            if !(256..=1024).contains(&n.len()) || e.is_empty() {
                return Err("RSA modulus outside 2048..8192 bits");
            }
            // aws-lc-rs encodes the SubjectPublicKeyInfo from the components.
            let spki = aws_lc_rs::rsa::PublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .as_der()
            .map_err(|_| "RSA key parameters do not form a key")?;
            ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, spki.as_ref())
        }
        (Algorithm::ES256, "EC", Some("P-256")) => {
            let (x, y) = (bytes(&jwk.x)?, bytes(&jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates are not 32 bytes");
            }
            // SEC 1 uncompressed point; JWS ES256 signatures are the fixed r || s form.
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        }
        (Algorithm::EdDSA, "OKP", Some("Ed25519")) => {
            let x = bytes(&jwk.x)?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes");
            }
            ParsedPublicKey::new(&ED25519, x)
        }
        (alg, _, _) if !supported(alg) => return Err("unsupported alg"),
        _ => return Err("alg does not fit kty/crv"),
    }
    .map_err(|_| "key parameters do not parse")?;
    Ok((alg, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn parse_one(jwk: serde_json::Value) -> Result<usize, String> {
        parse(serde_json::json!({ "keys": [jwk] }).to_string().as_bytes()).map(|k| k.len())
    }

    #[test]
    fn only_fitting_signature_keys_are_kept() {
        let ok = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":X,"kid":"a","alg":"EdDSA","use":"sig"});
        assert_eq!(parse_one(ok.clone()), Ok(1));
        for (field, value) in [
            ("alg", serde_json::json!("ES256")), // alg does not fit the key type
            ("alg", serde_json::json!("HS256")),
            ("alg", serde_json::json!("none")),
            ("use", serde_json::json!("enc")),
            ("key_ops", serde_json::json!(["sign"])),
            ("kid", serde_json::json!("")),
            ("x", serde_json::json!("AAAA")),
            ("d", serde_json::json!(X)),
        ] {
            let mut bad = ok.clone();
            bad[field] = value;
            assert!(
                parse_one(bad).is_err(),
                "{field} must make the key unusable"
            );
        }
        let mut no_alg = ok.clone();
        no_alg.as_object_mut().expect("object").remove("alg");
        assert!(parse_one(no_alg).is_err());
        let hmac = serde_json::json!({"kty":"oct","k":X,"kid":"h","alg":"HS256"});
        assert!(parse_one(hmac).is_err());
    }

    #[test]
    fn repeated_kid_keeps_one_and_junk_entries_are_skipped() {
        let ok = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":X,"kid":"a","alg":"EdDSA"});
        let body = serde_json::json!({"keys": [ok, ok, 42, {"kty": 1}]}).to_string();
        let keys = parse(body.as_bytes()).expect("parse");
        assert_eq!(keys.len(), 1);
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }
}
