//! Verifying the tokens this Castellan signed (the `/v1` bearer check, userinfo, introspection
//! and logout's `id_token_hint`): signature by a key of the ring, `typ`, no `crit`, issuer and audience.

use jsonwebtoken::Validation;
use serde::Deserialize;
use serde_json::Value;

use crate::state::{AppState, LoadedRing};
use crate::tokens::error::TokenError;

/// Which kind of token is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An access token (`typ` `at+jwt`).
    Access,
    /// An ID token (`typ` `JWT`), such as an `id_token_hint`.
    Id,
}

/// The signature, type, issuer and (when given) audience of a token this Castellan signed; not its
/// times, which callers judge against the state's clock.
pub(crate) fn verify<T: serde::de::DeserializeOwned>(
    state: &AppState,
    ring: &LoadedRing,
    token: &str,
    audience: Option<&str>,
    kind: Kind,
) -> Result<T, &'static str> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is malformed")?;
    let typ_ok = match kind {
        Kind::Access => header.typ.as_deref().is_some_and(is_access_token_type),
        Kind::Id => header.typ.as_deref() == Some("JWT"),
    };
    if !typ_ok {
        return Err(match kind {
            Kind::Access => "not an access token",
            Kind::Id => "not an ID token",
        });
    }
    if header.crit.is_some() || raw_header_has_crit(token) {
        return Err("the token names critical header extensions, which Castellan does not support");
    }
    let (dk, alg) = header
        .kid
        .as_deref()
        .and_then(|kid| ring.verifiers.get(kid))
        .ok_or("the token was signed by an unknown key")?;
    let mut v = Validation::new(*alg);
    v.set_issuer(&[&state.settings().issuer]);
    match audience {
        Some(aud) => v.set_audience(&[aud]),
        None => v.validate_aud = false,
    }
    match kind {
        Kind::Access => v.set_required_spec_claims(&["exp", "iss", "aud", "nbf"]),
        Kind::Id => v.set_required_spec_claims(&["exp", "iss", "aud"]),
    }
    // Expiry is judged against the state's clock (a parameter), by the caller.
    v.validate_exp = false;
    v.validate_nbf = false;
    jsonwebtoken::decode::<T>(token, dk, &v)
        .map(|data| data.claims)
        .map_err(|_| "the token is not valid")
}

/// `typ` is a media type: `at+jwt` or `application/at+jwt`, compared case-insensitively (RFC 9068
/// §2.1, RFC 7515 §4.1.9).
fn is_access_token_type(typ: &str) -> bool {
    let short = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    short.eq_ignore_ascii_case("at+jwt")
}

/// Whether the header's own JSON has a `crit` member. jsonwebtoken's `Header` reads `"crit": null` as
/// absent, and a member name written with escapes (`cr\u0069t`) is still `crit`; RFC 7515 §4.1.11
/// says a recipient that does not understand the extensions it lists must refuse the token. A header
/// that cannot be read again counts as having one.
fn raw_header_has_crit(token: &str) -> bool {
    use base64::Engine as _;
    let segment = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).ok()
        })
        .is_none_or(|header| header.contains_key("crit"))
}

/// The claims of an access token issued for a user, as read back.
#[derive(Debug, Deserialize)]
pub(crate) struct ReadClaims {
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) iss: String,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) jti: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    #[serde(default)]
    pub(crate) sid: Option<String>,
    /// The actor chain of an exchanged token (RFC 8693 §4.1).
    #[serde(default)]
    pub(crate) act: Option<Value>,
}

/// A live access token's claims: signed by the ring, in its time, and (for a user's token) its
/// session not ended.
pub(crate) async fn live_access_token(
    state: &AppState,
    token: &str,
) -> Result<Option<ReadClaims>, TokenError> {
    if token.len() > 8192 {
        return Ok(None);
    }
    let ring = state.ring();
    let Ok(c) = verify::<ReadClaims>(state, &ring, token, None, Kind::Access) else {
        return Ok(None);
    };
    let now = state.now();
    if c.exp <= now || c.nbf > now + 60 {
        return Ok(None);
    }
    if let Some(sid) = &c.sid {
        let live = state
            .store()
            .session(sid)
            .await
            .map_err(|_| TokenError::Unavailable)?
            .is_some_and(|s| s.ended_at.is_none());
        if !live {
            return Ok(None);
        }
    }
    Ok(Some(c))
}
