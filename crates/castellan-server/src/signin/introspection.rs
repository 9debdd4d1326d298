//! What apps and APIs ask about tokens: userinfo (OpenID Connect Core §5.3), revocation (RFC 7009)
//! and introspection (RFC 7662).

use castellan_core::secret;
use castellan_store::ClientRow;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::grants::user_claims;
use crate::own_tokens::{self, live_access_token};
use crate::state::AppState;
use crate::tokens::error::TokenError;

/// The scope a client needs to introspect tokens.
pub const INTROSPECT_SCOPE: &str = "tokens:introspect";

/// Why userinfo refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserinfoError {
    /// No valid access token for a user (RFC 6750 `invalid_token`).
    #[error("{0}")]
    InvalidToken(&'static str),
    /// The store cannot answer now.
    #[error("try again shortly")]
    Unavailable,
}

/// `GET /oauth2/userinfo`: the user's claims for a live access token issued to an app for them.
pub async fn userinfo(state: &AppState, token: &str) -> Result<Map<String, Value>, UserinfoError> {
    let c = live_access_token(state, token)
        .await
        .map_err(|_| UserinfoError::Unavailable)?
        .filter(|c| c.sid.is_some())
        .ok_or(UserinfoError::InvalidToken(
            "the access token is not valid for userinfo",
        ))?;
    if !c.scope.split(' ').any(|s| s == "openid") {
        return Err(UserinfoError::InvalidToken(
            "the access token lacks the openid scope",
        ));
    }
    let store = state.store();
    let user = store
        .user(&c.sub)
        .await
        .map_err(|_| UserinfoError::Unavailable)?
        .filter(|u| u.disabled_at.is_none())
        .ok_or(UserinfoError::InvalidToken("the user cannot sign in"))?;
    let client = state
        .client(&c.client_id)
        .await
        .map_err(|_| UserinfoError::Unavailable)?
        .ok_or(UserinfoError::InvalidToken(
            "the token's client no longer exists",
        ))?;
    let has = |s: &str| c.scope.split(' ').any(|g| g == s);
    let mut out = user_claims(&client, &user, &c.scope);
    out.insert("sub".into(), Value::String(user.user_id.clone()));
    if has("profile") {
        out.insert(
            "preferred_username".into(),
            Value::String(user.name.clone()),
        );
    }
    if has("email")
        && let Some(e) = &user.email
    {
        out.insert("email".into(), Value::String(e.clone()));
    }
    Ok(out)
}

/// `POST /oauth2/revoke` (RFC 7009): a refresh token revokes its whole family; an access token is
/// a JWT that stays valid until it expires (answered 200 all the same, as the RFC asks for tokens
/// the server cannot revoke or does not know).
pub async fn revoke(state: &AppState, client: &ClientRow, token: &str) -> Result<(), TokenError> {
    let found = state
        .store()
        .refresh_token(&secret::hash_secret(token))
        .await
        .map_err(|_| TokenError::Unavailable)?;
    if let Some((_, grant)) = found
        && grant.client_id == client.client_id
    {
        state
            .store()
            .revoke_grant(&grant.grant_id, "revoked", state.now())
            .await
            .map_err(|_| TokenError::Unavailable)?;
    }
    Ok(())
}

/// `POST /oauth2/introspect` (RFC 7662), for clients holding [`INTROSPECT_SCOPE`].
pub async fn introspect(
    state: &AppState,
    client: &ClientRow,
    token: &str,
) -> Result<Value, TokenError> {
    if !client.scopes.split(' ').any(|s| s == INTROSPECT_SCOPE) {
        return Err(TokenError::ScopeNotAllowed(INTROSPECT_SCOPE.into()));
    }
    if let Some(c) = live_access_token(state, token).await? {
        let mut v = json!({
            "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id,
            "sub": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "nbf": c.nbf,
            "jti": c.jti,
        });
        if let Some(sid) = c.sid {
            v["sid"] = Value::String(sid);
        }
        return Ok(v);
    }
    let now = state.now();
    let found = state
        .store()
        .refresh_token(&secret::hash_secret(token))
        .await
        .map_err(|_| TokenError::Unavailable)?;
    Ok(match found {
        Some((r, g))
            if r.used_at.is_none()
                && r.expires_at > now
                && g.revoked_at.is_none()
                && g.expires_at > now =>
        {
            json!({
                "active": true, "token_type": "refresh_token", "scope": g.scope,
                "client_id": g.client_id, "sub": g.user_id, "exp": r.expires_at, "iat": r.created_at,
                "iss": state.settings().issuer, "sid": g.sid,
            })
        }
        _ => json!({"active": false}),
    })
}

#[derive(Debug, Deserialize)]
struct HintClaims {
    aud: String,
    #[serde(default)]
    sid: Option<String>,
}

/// An `id_token_hint`: the app (`aud`) and session (`sid`) of an ID token this Castellan signed,
/// expired or not (OpenID Connect RP-Initiated Logout §2).
pub fn id_token_hint(state: &AppState, token: &str) -> Option<(String, Option<String>)> {
    if token.len() > 8192 {
        return None;
    }
    let ring = state.ring();
    own_tokens::verify::<HintClaims>(state, &ring, token, None, own_tokens::Kind::Id)
        .ok()
        .map(|c| (c.aud, c.sid))
}
