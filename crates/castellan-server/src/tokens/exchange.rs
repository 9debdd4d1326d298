//! Token exchange (RFC 8693): a service holding a person's access token exchanges it for a token for
//! another audience, with the same or fewer scopes and an `act` claim naming the service.
//!
//! The exchanging client's policy decides both ends: `exchange_from` lists the audiences of the
//! tokens it may exchange (a token addressed to someone else is refused), and the target is one of
//! the audiences it may have ([`super::audience::pick`], the rule of every token request).

use castellan_core::secret;
use castellan_core::token::{AccessClaims, sign_jwt};
use castellan_store::ClientRow;
use serde::Serialize;

use super::{IssuedToken, TokenError, TokenRequest, audience};
use crate::own_tokens::live_access_token;
use crate::state::AppState;

/// The grant type of a token exchange.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The one subject token type taken, and the type of the token issued.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An exchanged token's claims: the RFC 9068 ones, the session it came from, and who acts.
#[derive(Serialize)]
struct ExchangedClaims {
    #[serde(flatten)]
    base: AccessClaims,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    act: serde_json::Value,
}

/// Exchanges `req.subject_token` (a live access token this Castellan issued) for one for the
/// requested audience, for the authenticated `client`.
pub async fn exchange(
    state: &AppState,
    client: &ClientRow,
    req: &TokenRequest,
) -> Result<IssuedToken, TokenError> {
    let may_from = client
        .policy
        .as_ref()
        .map(|p| p.exchange_from.as_str())
        .unwrap_or_default();
    // A public client has no secret: whoever holds a person's token could exchange it as that client.
    if may_from.is_empty() || client.app.public_client {
        return Err(TokenError::UnauthorizedClient);
    }
    let subject = req
        .subject_token
        .as_deref()
        .ok_or_else(|| TokenError::InvalidRequest("subject_token is missing".into()))?;
    match req.subject_token_type.as_deref() {
        Some(ACCESS_TOKEN_TYPE) => {}
        Some(_) => {
            return Err(TokenError::InvalidRequest(format!(
                "subject_token_type must be {ACCESS_TOKEN_TYPE}"
            )));
        }
        None => {
            return Err(TokenError::InvalidRequest(
                "subject_token_type is missing".into(),
            ));
        }
    }
    let claims = live_access_token(state, subject)
        .await?
        .ok_or(TokenError::InvalidGrant(
            "the subject token is not a live access token of this issuer",
        ))?;
    if !may_from.split(' ').any(|a| a == claims.aud) {
        return Err(TokenError::InvalidGrant(
            "the subject token's audience is not one this client may exchange tokens of",
        ));
    }
    let aud = audience::pick(state, client, req.audience.as_deref())?;
    // The same or fewer scopes: those of the subject token, never more.
    let scope = super::granted_scope(&claims.scope, req.scope.as_deref())?;
    let now = state.now();
    let ring = state.ring();
    let key = ring
        .ring
        .signing_key(now)
        .map_err(|_| TokenError::NoSigningKey)?;
    let settings = state.settings();
    // Never beyond the subject token's own expiry: an exchange does not extend a person's access.
    let exp = (now + settings.default_ttl_secs.min(settings.max_ttl_secs)).min(claims.exp);
    // RFC 8693 §4.1: the current actor first, the earlier chain nested inside.
    let mut act = serde_json::json!({ "sub": client.client_id });
    if let Some(prior) = claims.act {
        act["act"] = prior;
    }
    let token = ExchangedClaims {
        base: AccessClaims {
            iss: settings.issuer.clone(),
            sub: claims.sub,
            aud,
            exp,
            iat: now,
            nbf: now,
            jti: secret::random_id("", 16).map_err(|_| TokenError::Internal)?,
            client_id: client.client_id.clone(),
            scope: scope.clone(),
        },
        sid: claims.sid,
        act,
    };
    let access_token = sign_jwt(&key.key, "at+jwt", &token).map_err(|_| TokenError::Internal)?;
    state.metrics().token_issued(key.key.alg());
    tracing::info!(client_id = %client.client_id, on_behalf_of = %token.base.sub, aud = %token.base.aud, "exchanged a token");
    Ok(IssuedToken {
        access_token,
        expires_in: exp - now,
        scope,
        id_token: None,
        refresh_token: None,
    })
}
