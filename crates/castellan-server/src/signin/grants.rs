//! The token endpoint's grants for people: `authorization_code` (PKCE, single use, bound to the
//! client and redirect URI) and `refresh_token` (rotated on every use; a rotated token presented
//! again revokes its whole family).

use castellan_core::secret;
use castellan_core::signin::{IdClaims, pkce};
use castellan_core::token::{AccessClaims, UserAccessClaims, sign_jwt};
use castellan_store::{
    ClientRow, GrantRow, Redemption, RefreshRow, RotateRequest, Rotation, UserRow,
};
use serde_json::{Map, Value};

use super::opaque;
use crate::state::AppState;
use crate::tokens::error::TokenError;
use crate::tokens::issued::IssuedToken;

/// The `authorization_code` grant.
pub async fn authorization_code(
    state: &AppState,
    client: &ClientRow,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<IssuedToken, TokenError> {
    if !client.app.allows_grant("authorization_code") {
        return Err(TokenError::UnauthorizedClient);
    }
    let now = state.now();
    let store = state.store();
    let hash = secret::hash_secret(code);
    let row = store
        .code(&hash)
        .await
        .map_err(|_| TokenError::Unavailable)?
        .filter(|c| c.client_id == client.client_id)
        .ok_or(TokenError::InvalidGrant(
            "the code is unknown, expired or was issued to another client",
        ))?;
    let user = store
        .user(&row.user_id)
        .await
        .map_err(|_| TokenError::Unavailable)?;
    let fresh = row.used_at.is_none();
    if fresh {
        if row.expires_at <= now {
            return Err(TokenError::InvalidGrant(
                "the code is unknown, expired or was issued to another client",
            ));
        }
        if redirect_uri != Some(row.redirect_uri.as_str()) {
            return Err(TokenError::InvalidGrant(
                "redirect_uri is not the one the code was issued for",
            ));
        }
        let Some(verifier) = verifier else {
            return Err(TokenError::InvalidRequest(
                "code_verifier is missing (PKCE)".into(),
            ));
        };
        if !pkce::verify(verifier, &row.code_challenge) {
            return Err(TokenError::InvalidGrant(
                "code_verifier does not match the code_challenge",
            ));
        }
    }
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        return Err(TokenError::InvalidGrant("the user cannot sign in"));
    };
    let signin = &state.settings().signin;
    let refreshable = client.app.allows_grant("refresh_token");
    let grant = GrantRow {
        grant_id: secret::random_id("gr_", 16).map_err(|_| TokenError::Internal)?,
        client_id: client.client_id.clone(),
        user_id: user.user_id.clone(),
        sid: row.sid.clone(),
        scope: row.scope.clone(),
        auth_time: row.auth_time,
        amr: row.amr.clone(),
        created_at: now,
        expires_at: now
            + if refreshable {
                signin.refresh_absolute_secs
            } else {
                state.settings().max_ttl_secs
            },
        revoked_at: None,
        revoked_why: None,
    };
    let refresh = if refreshable {
        let (value, token_hash) = opaque().map_err(|_| TokenError::Internal)?;
        let r = RefreshRow {
            token_hash,
            grant_id: grant.grant_id.clone(),
            created_at: now,
            expires_at: (now + signin.refresh_idle_secs).min(grant.expires_at),
            used_at: None,
        };
        Some((value, r))
    } else {
        None
    };
    match store
        .redeem_code(&hash, now, &grant, refresh.as_ref().map(|(_, r)| r))
        .await
        .map_err(|_| TokenError::Unavailable)?
    {
        Redemption::Redeemed => {}
        Redemption::Reused => {
            tracing::warn!(client_id = %client.client_id, "an authorization code was used twice; its tokens are revoked");
            crate::audit::events::reuse(state, "signin.code_reuse", &client.client_id, None);
            return Err(TokenError::InvalidGrant(
                "the code was used already; what it issued is revoked",
            ));
        }
    }
    let mut tokens = user_tokens(state, client, &user, &grant, &row.scope)?;
    if row.scope.split(' ').any(|s| s == "openid") {
        tokens.id_token = Some(id_token(state, client, &user, &grant, row.nonce.clone())?);
    }
    tokens.refresh_token = refresh.map(|(v, _)| v);
    Ok(tokens)
}

/// The `refresh_token` grant: a new access token, a new refresh token and, for an OpenID grant, a
/// new ID token; `scope` may narrow.
pub async fn refresh(
    state: &AppState,
    client: &ClientRow,
    token: &str,
    scope: Option<&str>,
) -> Result<IssuedToken, TokenError> {
    if !client.app.allows_grant("refresh_token") {
        return Err(TokenError::UnauthorizedClient);
    }
    let now = state.now();
    let signin = &state.settings().signin;
    let (new_value, new_hash) = opaque().map_err(|_| TokenError::Internal)?;
    let rotation = state
        .refreshes()
        .rotate(RotateRequest {
            token_hash: secret::hash_secret(token),
            new_hash,
            client_id: client.client_id.clone(),
            idle_secs: signin.refresh_idle_secs,
            grace_secs: signin.refresh_grace_secs,
            now,
        })
        .await
        .map_err(|_| TokenError::Unavailable)?;
    let (grant, user) = match rotation {
        Rotation::Rotated { grant, user } => (*grant, user),
        Rotation::Reused => {
            tracing::warn!(client_id = %client.client_id, "a rotated refresh token was presented again; its family is revoked");
            crate::audit::events::reuse(state, "signin.refresh_reuse", &client.client_id, None);
            return Err(TokenError::InvalidGrant(
                "the refresh token was used already; its family is revoked",
            ));
        }
        Rotation::Invalid => {
            return Err(TokenError::InvalidGrant(
                "the refresh token is unknown, expired or revoked",
            ));
        }
    };
    let scope = match scope {
        None => grant.scope.clone(),
        Some(asked) => {
            let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(bad) = asked
                .iter()
                .find(|s| !grant.scope.split(' ').any(|g| g == **s))
            {
                return Err(TokenError::ScopeNotAllowed((*bad).to_owned()));
            }
            asked.join(" ")
        }
    };
    let user = user
        .map(|u| *u)
        .filter(|u| u.disabled_at.is_none())
        .ok_or(TokenError::InvalidGrant("the user cannot sign in"))?;
    let mut tokens = user_tokens(state, client, &user, &grant, &scope)?;
    // A new ID token when the grant is OpenID's (OpenID Connect Core §12.2): the same iss, sub, aud
    // and auth_time as at sign-in, a new iat, no nonce.
    if scope.split(' ').any(|s| s == "openid") {
        tokens.id_token = Some(id_token(state, client, &user, &grant, None)?);
    }
    tokens.refresh_token = Some(new_value);
    Ok(tokens)
}

/// The user's claims this app is configured to receive.
pub(crate) fn user_claims(client: &ClientRow, user: &UserRow, scope: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let has = |s: &str| scope.split(' ').any(|g| g == s);
    let extra: Map<String, Value> = serde_json::from_str(&user.claims).unwrap_or_default();
    let groups = || {
        Value::Array(
            user.groups
                .split(' ')
                .filter(|g| !g.is_empty())
                .map(|g| Value::String(g.to_owned()))
                .collect(),
        )
    };
    for name in client.app.user_claims.split(' ').filter(|s| !s.is_empty()) {
        match name {
            "groups" => {
                out.insert("groups".into(), groups());
            }
            "email" => {
                if let Some(e) = &user.email {
                    out.insert("email".into(), Value::String(e.clone()));
                }
            }
            "preferred_username" | "name" => {
                out.insert(name.into(), Value::String(user.name.clone()));
            }
            other => {
                if let Some(v) = extra.get(other) {
                    out.insert(other.into(), v.clone());
                }
            }
        }
    }
    if has("groups") && !out.contains_key("groups") {
        out.insert("groups".into(), groups());
    }
    out
}

fn user_tokens(
    state: &AppState,
    client: &ClientRow,
    user: &UserRow,
    grant: &GrantRow,
    scope: &str,
) -> Result<IssuedToken, TokenError> {
    let now = state.now();
    let settings = state.settings();
    let ring = state.ring();
    let key = ring
        .ring
        .signing_key(now)
        .map_err(|_| TokenError::NoSigningKey)?;
    let ttl = if client.token_ttl_secs > 0 {
        client.token_ttl_secs
    } else {
        settings.default_ttl_secs
    }
    .min(settings.max_ttl_secs);
    let claims = UserAccessClaims {
        base: AccessClaims {
            iss: settings.issuer.clone(),
            sub: user.user_id.clone(),
            aud: client
                .audience
                .clone()
                .unwrap_or_else(|| settings.issuer.clone()),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: secret::random_id("", 16).map_err(|_| TokenError::Internal)?,
            client_id: client.client_id.clone(),
            scope: scope.to_owned(),
        },
        sid: grant.sid.clone(),
        auth_time: grant.auth_time,
        extra: user_claims(client, user, scope),
    };
    let access_token = sign_jwt(&key.key, "at+jwt", &claims).map_err(|_| TokenError::Internal)?;
    state.metrics().token_issued(key.key.alg());
    state.audit().token_issued(&client.client_id);
    Ok(IssuedToken {
        access_token,
        expires_in: ttl,
        scope: scope.to_owned(),
        id_token: None,
        refresh_token: None,
    })
}

fn id_token(
    state: &AppState,
    client: &ClientRow,
    user: &UserRow,
    grant: &GrantRow,
    nonce: Option<String>,
) -> Result<String, TokenError> {
    let now = state.now();
    let settings = state.settings();
    let ring = state.ring();
    let key = ring
        .ring
        .signing_key(now)
        .map_err(|_| TokenError::NoSigningKey)?;
    let has = |s: &str| grant.scope.split(' ').any(|g| g == s);
    let claims = IdClaims {
        iss: settings.issuer.clone(),
        sub: user.user_id.clone(),
        aud: client.client_id.clone(),
        exp: now + settings.signin.id_token_ttl_secs,
        iat: now,
        auth_time: grant.auth_time,
        nonce,
        sid: grant.sid.clone(),
        amr: grant.amr.split(' ').map(str::to_owned).collect(),
        preferred_username: has("profile").then(|| user.name.clone()),
        email: if has("email") {
            user.email.clone()
        } else {
            None
        },
    };
    sign_jwt(&key.key, "JWT", &claims).map_err(|_| TokenError::Internal)
}
