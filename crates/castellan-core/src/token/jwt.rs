//! Access tokens as JWTs (RFC 9068).
//!
//! Only *encoding* lives here: base64url of two JSON documents and a signature made by a key parsed
//! once. Parsing and verifying tokens is left to a JWT library (jsonwebtoken) in the callers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use super::error::TokenError;
use super::keys::SigningKey;

/// The claims of a Castellan access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the server's public URL.
    pub iss: String,
    /// Subject: the client id (the client acts for itself).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Space-separated scopes.
    pub scope: String,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// Signs `claims` as a compact JWS with header `{alg, kid, typ: "at+jwt"}`.
pub fn sign_access_token(key: &SigningKey, claims: &AccessClaims) -> Result<String, TokenError> {
    sign_jwt(key, "at+jwt", claims)
}

/// The claims of an access token issued to an app for a signed-in user: the RFC 9068 claims (`sub`
/// is the user's stable id), the session's id and sign-in time, and the user's claims the app was
/// configured to receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAccessClaims {
    /// The RFC 9068 claims.
    #[serde(flatten)]
    pub base: AccessClaims,
    /// The session the user signed in with.
    pub sid: String,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The user's groups and claims, as configured for the app.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Signs any claims as a compact JWS with header `{alg, kid, typ}` (`at+jwt` for access tokens,
/// `JWT` for ID tokens).
pub fn sign_jwt<T: Serialize>(
    key: &SigningKey,
    typ: &str,
    claims: &T,
) -> Result<String, TokenError> {
    let header = Header {
        alg: key.alg().as_str(),
        kid: key.kid(),
        typ,
    };
    let header = serde_json::to_vec(&header).map_err(|e| TokenError::Encoding(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| TokenError::Encoding(e.to_string()))?;
    let mut token = String::with_capacity(header.len() * 2 + payload.len() * 2 + 400);
    B64.encode_string(&header, &mut token);
    token.push('.');
    B64.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    B64.encode_string(&signature, &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Alg;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://castellan.test".into(),
            sub: "c1".into(),
            aud: "api".into(),
            exp: 4_000_000_000,
            iat: 1_700_000_000,
            nbf: 1_700_000_000,
            jti: "j1".into(),
            client_id: "c1".into(),
            scope: "a b".into(),
        }
    }

    /// jsonwebtoken (another implementation) verifies what we sign, for every algorithm.
    #[test]
    fn jsonwebtoken_verifies_our_tokens() {
        for alg in Alg::ALL {
            let (key, _) = SigningKey::generate(alg, None).expect("key");
            let token = sign_access_token(&key, &claims()).expect("sign");
            let header = decode_header(&token).expect("header");
            assert_eq!(header.kid.as_deref(), Some(key.kid()));
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(serde_json::to_value(key.jwk()).expect("jwk"))
                    .expect("jwk parse");
            let dk = DecodingKey::from_jwk(&jwk).expect("decoding key");
            let mut v = Validation::new(header.alg);
            v.set_audience(&["api"]);
            v.set_issuer(&["https://castellan.test"]);
            let data = decode::<AccessClaims>(&token, &dk, &v).expect("verifies");
            assert_eq!(data.claims, claims());
            // A flipped bit in the payload breaks the signature.
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            let mut other = claims();
            other.scope = "admin".into();
            parts[1] = B64.encode(serde_json::to_vec(&other).expect("json"));
            assert!(decode::<AccessClaims>(&parts.join("."), &dk, &v).is_err());
        }
    }
}
