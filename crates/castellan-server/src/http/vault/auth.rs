//! Logins and the token's own endpoints: `auth/{approle}/login` (role_id = client id, secret_id =
//! client secret), `auth/{kubernetes}/login` and `auth/{jwt}/login` (a token of a `[[trusted_issuer]]`,
//! checked by [`crate::assertion`]), and `auth/token/lookup-self|renew-self|revoke-self`.
//!
//! A login's token is bound to the Castellan client and every scope it holds; Vault's "policies" in
//! the answers are those scopes, read-only.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use castellan_store::VaultTokenRow;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{VaultError, VaultRequest, caller, data_response, envelope, no_content, vault_time};
use crate::assertion::AssertionError;
use crate::state::AppState;
use crate::tokens::{self, ClientCredentials, TokenError};
use crate::vault_tokens::{self, VaultSettings};

pub(super) async fn route(
    state: &AppState,
    r: &VaultRequest,
    v: &VaultSettings,
    rest: &[&str],
) -> Result<Response, VaultError> {
    match rest {
        ["token", "lookup-self"] => match r.method {
            Method::GET | Method::POST | Method::PUT => {
                let (row, claims) = caller(state, r).await?;
                Ok(data_response(lookup_data(
                    state,
                    &row,
                    &claims.scope,
                    Some(token_of(r)),
                )))
            }
            _ => Err(VaultError::unsupported()),
        },
        ["token", "renew-self"] if r.is_write() => {
            let (row, claims) = caller(state, r).await?;
            let renewed = vault_tokens::renew(state, &row).await?;
            let auth = auth_block(state.now(), token_of(r), &renewed, &claims.scope);
            Ok(envelope(Value::Null, auth))
        }
        ["token", "revoke-self"] if r.is_write() => {
            let (row, _) = caller(state, r).await?;
            vault_tokens::revoke(state, &row).await?;
            tracing::info!(accessor = %row.accessor, client_id = %row.client_id, "a vault token was revoked");
            Ok(no_content())
        }
        [m, "login"] if *m == v.approle_mount && r.is_write() => approle(state, r, m).await,
        [m, "login"] if (*m == v.kubernetes_mount || *m == v.jwt_mount) && r.is_write() => {
            jwt_login(state, r, m).await
        }
        ["token", _] | [_, "login"] => Err(VaultError::unsupported()),
        _ => Err(VaultError::no_route(&format!("auth/{}", rest.join("/")))),
    }
}

fn token_of(r: &VaultRequest) -> &str {
    r.headers
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn policies(scope: &str) -> Vec<&str> {
    scope.split(' ').filter(|s| !s.is_empty()).collect()
}

fn lookup_data(state: &AppState, row: &VaultTokenRow, scope: &str, id: Option<&str>) -> Value {
    json!({
        "accessor": row.accessor,
        "creation_time": row.created_at,
        "creation_ttl": row.ttl_secs,
        "display_name": format!("{}-{}", row.auth_path.split('/').nth(1).unwrap_or("token"), row.client_id),
        "entity_id": "",
        "expire_time": vault_time(row.expires_at),
        "explicit_max_ttl": 0,
        "id": id,
        "issue_time": vault_time(row.created_at),
        "meta": {"client_id": row.client_id},
        "num_uses": 0,
        "orphan": true,
        "path": row.auth_path,
        "policies": policies(scope),
        "renewable": true,
        "ttl": (row.expires_at - state.now()).max(0),
        "type": "service",
    })
}

fn auth_block(now: i64, token: &str, row: &VaultTokenRow, scope: &str) -> Value {
    json!({
        "client_token": token,
        "accessor": row.accessor,
        "policies": policies(scope),
        "token_policies": policies(scope),
        "identity_policies": null,
        "metadata": {"client_id": row.client_id},
        "lease_duration": (row.expires_at - now).max(0),
        "renewable": true,
        "entity_id": "",
        "token_type": "service",
        "orphan": true,
        "mfa_requirement": null,
        "num_uses": 0,
    })
}

fn login_response(state: &AppState, new: &vault_tokens::NewToken) -> Response {
    tracing::info!(accessor = %new.row.accessor, client_id = %new.row.client_id, path = %new.row.auth_path, "vault login");
    envelope(
        Value::Null,
        auth_block(state.now(), &new.token, &new.row, &new.row.scope),
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRoleLogin {
    role_id: String,
    secret_id: Zeroizing<String>,
}

async fn approle(state: &AppState, r: &VaultRequest, mount: &str) -> Result<Response, VaultError> {
    let body: AppRoleLogin = r.json()?;
    let credentials = ClientCredentials {
        client_id: body.role_id,
        client_secret: Some(body.secret_id),
    };
    let client = match tokens::authenticate(state, &credentials).await {
        Ok(c) => c,
        Err(TokenError::Unavailable) => {
            return Err(VaultError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; try again",
            ));
        }
        Err(_) => {
            return Err(VaultError::bad_request(
                "invalid role_id or secret_id".into(),
            ));
        }
    };
    if client.app.public_client || !client.app.allows_grant("client_credentials") {
        return Err(VaultError::bad_request(
            "invalid role_id or secret_id".into(),
        ));
    }
    let scope = policies(&client.scopes).join(" ");
    let new = vault_tokens::login(
        state,
        &client.client_id,
        &scope,
        0,
        &format!("auth/{mount}/login"),
    )
    .await?;
    Ok(login_response(state, &new))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtLogin {
    #[serde(default)]
    role: Option<String>,
    jwt: Zeroizing<String>,
}

/// A login with another issuer's token (a pod's service-account token): verified as a client assertion
/// is, it becomes the client its `[[trusted_issuer]]` maps it to. `role`, when sent, must name that
/// client (Castellan's entries are the roles), so a role that is not the one the token maps to is
/// refused rather than ignored.
async fn jwt_login(
    state: &AppState,
    r: &VaultRequest,
    mount: &str,
) -> Result<Response, VaultError> {
    let body: JwtLogin = r.json()?;
    let refused = || VaultError::forbidden("permission denied".into());
    let Some(trusted) = state.trusted_issuers() else {
        tracing::info!("a vault jwt login was sent, but no trusted_issuer is configured");
        return Err(refused());
    };
    let client = match trusted.verify(&body.jwt, state.now()).await {
        Ok(c) => c,
        Err(AssertionError::KeysUnavailable) => {
            return Err(VaultError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the issuer's keys are unavailable; try again",
            ));
        }
        Err(e) => {
            tracing::info!(reason = %e, "vault jwt login refused");
            return Err(refused());
        }
    };
    if let Some(role) = body.role.as_deref().filter(|r| !r.is_empty())
        && role != client.client_id
    {
        tracing::info!(role = ?role.chars().take(64).collect::<String>(), client_id = %client.client_id, "vault jwt login refused: the role is not the client the token maps to");
        return Err(VaultError::forbidden(format!(
            "permission denied: role {:?} is not the client this token maps to",
            role.chars().take(64).collect::<String>()
        )));
    }
    let scope = policies(&client.scopes).join(" ");
    let new = vault_tokens::login(
        state,
        &client.client_id,
        &scope,
        client.token_ttl_secs,
        &format!("auth/{mount}/login"),
    )
    .await?;
    Ok(login_response(state, &new))
}
