//! Users: the people who sign in. Creating, listing, changing passwords, disabling (which ends their
//! sessions and refresh families at once, on every replica) and deleting them.

use std::collections::BTreeMap;

use castellan_core::secret;
use castellan_core::signin::password;
use castellan_core::signin::valid_user_name;
use castellan_store::{Store, UserRow};
pub use castellan_wire::users::{NewUser, UserInfo};
use zeroize::Zeroizing;

use crate::error::ServiceError;
use crate::signin::Hashing;
use castellan_core::token::valid_scope_token;

/// A user as shown.
pub fn user_info(u: &UserRow) -> UserInfo {
    let claims: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&u.claims).unwrap_or_default();
    UserInfo {
        user_id: u.user_id.clone(),
        name: u.name.clone(),
        email: u.email.clone(),
        groups: u
            .groups
            .split(' ')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        claims: claims
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        disabled: u.disabled_at.is_some(),
        totp_enrolled: u.totp_sealed.is_some(),
        require_mfa: u.totp_required,
        has_password: u.password_hash.is_some(),
        created_at: u.created_at,
    }
}

/// Claim names the tokens already carry, which a user's `--claim` cannot replace.
const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "sid",
    "auth_time",
    "nonce",
    "amr",
    "azp",
    "acr",
    "at_hash",
    "c_hash",
];

/// Checks a new password against the rules and hashes it on `hashing`'s threads.
pub async fn hash_password(
    hashing: &Hashing,
    password: Zeroizing<String>,
) -> Result<String, ServiceError> {
    password::check_new_password(&password).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    hashing
        .hash(password)
        .await
        .ok_or_else(|| ServiceError::Invalid("the password could not be hashed".into()))
}

/// Creates a user.
pub async fn create_user(
    store: &Store,
    req: NewUser,
    hashing: &Hashing,
    now: i64,
) -> Result<UserInfo, ServiceError> {
    if !valid_user_name(&req.name) {
        return Err(ServiceError::Invalid(
            "a user name must be 1-64 characters of letters, digits, '-', '_', '.' and '@'".into(),
        ));
    }
    if req.name.starts_with("usr_") {
        return Err(ServiceError::Invalid(
            "user names may not start with `usr_`, the prefix of user ids".into(),
        ));
    }
    if let Some(e) = &req.email
        && (e.len() > 254
            || !e.contains('@')
            || e.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ServiceError::Invalid(
            "the e-mail address is not valid".into(),
        ));
    }
    if let Some(bad) = req
        .groups
        .iter()
        .find(|g| !valid_scope_token(g) || g.len() > 128)
    {
        return Err(ServiceError::Invalid(format!(
            "`{}` is not a valid group name (no spaces, quotes or backslashes)",
            bad.escape_debug()
        )));
    }
    for (k, v) in &req.claims {
        if k.is_empty()
            || k.len() > 64
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(ServiceError::Invalid(format!(
                "`{}` is not a valid claim name",
                k.escape_debug()
            )));
        }
        if RESERVED_CLAIMS.contains(&k.as_str()) || k == "groups" || k == "email" {
            return Err(ServiceError::Invalid(format!(
                "`{k}` is set by Castellan itself and cannot be a user's claim"
            )));
        }
        if v.len() > 1024 {
            return Err(ServiceError::Invalid(format!(
                "claim `{k}` is over 1024 bytes"
            )));
        }
    }
    let password_hash = match req.password {
        Some(pw) => Some(hash_password(hashing, pw).await?),
        None => None,
    };
    let mut groups: Vec<String> = Vec::new();
    for g in req.groups {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let row = UserRow {
        user_id: secret::random_id("usr_", 12)?,
        name: req.name,
        email: req.email,
        password_hash,
        groups: groups.join(" "),
        claims: serde_json::to_string(&req.claims)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?,
        disabled_at: None,
        totp_dek_id: None,
        totp_sealed: None,
        totp_required: req.require_mfa,
        created_at: now,
        updated_at: now,
    };
    store.add_user(&row).await?;
    Ok(user_info(&row))
}

/// A user by name or id.
pub async fn find_user(store: &Store, name_or_id: &str) -> Result<UserRow, ServiceError> {
    if let Some(u) = store.user_by_name(name_or_id).await? {
        return Ok(u);
    }
    store
        .user(name_or_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("user `{}`", name_or_id.escape_debug())))
}

/// Every user.
pub async fn list_users(store: &Store) -> Result<Vec<UserInfo>, ServiceError> {
    Ok(store.users().await?.iter().map(user_info).collect())
}

/// Sets a user's password.
pub async fn set_password(
    store: &Store,
    name_or_id: &str,
    password: Zeroizing<String>,
    hashing: &Hashing,
    now: i64,
) -> Result<(), ServiceError> {
    let u = find_user(store, name_or_id).await?;
    let hash = hash_password(hashing, password).await?;
    store.set_password(&u.user_id, &hash, now).await?;
    Ok(())
}

/// Disables a user (ending their sessions and refresh families) or enables them again.
pub async fn set_disabled(
    store: &Store,
    name_or_id: &str,
    disabled: bool,
    now: i64,
) -> Result<UserInfo, ServiceError> {
    let u = find_user(store, name_or_id).await?;
    store
        .set_user_disabled(&u.user_id, disabled.then_some(now), now)
        .await?;
    find_user(store, &u.user_id).await.map(|u| user_info(&u))
}

/// Deletes a user with everything of theirs.
pub async fn delete_user(store: &Store, name_or_id: &str) -> Result<(), ServiceError> {
    let u = find_user(store, name_or_id).await?;
    store.delete_user(&u.user_id).await?;
    Ok(())
}
