//! Signing a person in: the password (checked by argon2id with a bounded number of hashes at once),
//! throttling of failures per account and per source address, and the session.

use std::net::IpAddr;

use castellan_core::secret;
use castellan_core::signin::throttle::{Counter, refused_until};
use castellan_store::{SessionRow, UserRow};
use zeroize::Zeroizing;

use super::opaque;
use crate::state::AppState;

/// Why a sign-in did not succeed. The message never says which of name or password was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown name, wrong password, or no password set.
    #[error("the name or password is not right")]
    Failed,
    /// Too many failures: try again at this time (unix seconds).
    #[error("too many failed sign-ins; try again in {0} seconds")]
    Throttled(i64),
    /// The account is disabled (said only after the password was right).
    #[error("this account is disabled")]
    Disabled,
    /// The store cannot answer now.
    #[error("sign-in is not available right now; try again shortly")]
    Unavailable,
}

/// A session just made: the cookie's value (shown to the browser once) and its row.
pub struct NewSession {
    /// The cookie's value.
    pub cookie: Zeroizing<String>,
    /// The session.
    pub session: SessionRow,
    /// Its user.
    pub user: UserRow,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("sid", &self.session.sid)
            .finish_non_exhaustive()
    }
}

/// `Throttled` when any of these failure counters (`account:NAME`, `address:IP`) is over its limit
/// in the current window.
pub(crate) async fn refuse_if_throttled(
    state: &AppState,
    keys: &[&str],
    now: i64,
) -> Result<(), LoginError> {
    let limits = state.settings().signin.throttle;
    let counters = state
        .store()
        .signin_failures(keys)
        .await
        .map_err(|_| LoginError::Unavailable)?;
    let limit_of = |k: &str| {
        if k.starts_with("account:") {
            limits.per_account
        } else {
            limits.per_address
        }
    };
    match keys
        .iter()
        .zip(&counters)
        .filter_map(|(k, c)| {
            let c = c.map(|(window_start, failures)| Counter {
                window_start,
                failures,
            });
            refused_until(c, limit_of(k), limits.window_secs, now)
        })
        .max()
    {
        Some(until) => Err(LoginError::Throttled((until - now).max(1))),
        None => Ok(()),
    }
}

/// The failure counters a sign-in attempt is counted under.
pub(crate) fn throttle_keys(name: &str, address: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("account:{}", name.to_ascii_lowercase())];
    if let Some(a) = address {
        keys.push(format!("address:{a}"));
    }
    keys
}

/// Checks a name and password and makes a session; `second_factor` says whether the session must
/// still pass a second factor (it is then made pending).
pub async fn password(
    state: &AppState,
    name: &str,
    password: Zeroizing<String>,
    address: Option<IpAddr>,
    second_factor: impl Fn(&UserRow) -> bool,
) -> Result<NewSession, LoginError> {
    let now = state.now();
    let limits = state.settings().signin.throttle;
    let keys = throttle_keys(name, address);
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    refuse_if_throttled(state, &key_refs, now).await?;
    let user = if castellan_core::signin::valid_user_name(name) {
        state
            .store()
            .user_by_name(name)
            .await
            .map_err(|_| LoginError::Unavailable)?
    } else {
        None
    };
    let phc = user.as_ref().and_then(|u| u.password_hash.clone());
    let outdated = phc.as_deref().is_some_and(|p| state.hashing().outdated(p));
    let again = outdated.then(|| password.clone());
    let ok = state.hashing().verify(password, phc.clone()).await && phc.is_some();
    let known = user.as_ref().map(|u| u.user_id.clone());
    let Some(user) = user.filter(|_| ok) else {
        let (id, why) = (known.as_deref(), Err("wrong name or password"));
        let _ = crate::audit::events::signin(state, "signin.login", id, address, why).await;
        let _ = state
            .store()
            .record_signin_failure(&key_refs, limits.window_secs, now)
            .await;
        tracing::info!(user = ?name.chars().take(64).collect::<String>(), "sign-in failed");
        return Err(LoginError::Failed);
    };
    if user.disabled_at.is_some() {
        let _ = crate::audit::events::signin(
            state,
            "signin.login",
            Some(&user.user_id),
            address,
            Err("the user is disabled"),
        )
        .await;
        return Err(LoginError::Disabled);
    }
    if let Some(password) = again {
        rehash(state, &user, password, now).await;
    }
    let pending = second_factor(&user);
    let s = new_session(state, user, "pwd", pending, now).await?;
    crate::audit::events::signin(
        state,
        "signin.login",
        Some(&s.user.user_id),
        address,
        Ok(&s.session.sid),
    )
    .await
    .map_err(|_| LoginError::Unavailable)?;
    Ok(s)
}

/// Hashes a password anew with the configured parameters (they changed since it was set). A
/// failure is logged and changes nothing: the old hash still verifies, and the next sign-in tries
/// again.
async fn rehash(state: &AppState, user: &UserRow, password: Zeroizing<String>, now: i64) {
    let Some(phc) = state.hashing().hash(password).await else {
        tracing::warn!(user = %user.user_id, "could not hash a password anew with the configured parameters");
        return;
    };
    match state.store().set_password(&user.user_id, &phc, now).await {
        Ok(_) => {
            tracing::info!(user = %user.user_id, "password hashed anew with the configured parameters")
        }
        Err(e) => {
            tracing::warn!(user = %user.user_id, error = %e, "could not store a password hashed anew")
        }
    }
}

/// Stores a new session for `user`.
pub(crate) async fn new_session(
    state: &AppState,
    user: UserRow,
    amr: &str,
    pending_mfa: bool,
    now: i64,
) -> Result<NewSession, LoginError> {
    let (cookie, secret_hash) = opaque().map_err(|_| LoginError::Unavailable)?;
    let session = SessionRow {
        sid: secret::random_id("ses_", 16).map_err(|_| LoginError::Unavailable)?,
        secret_hash,
        user_id: user.user_id.clone(),
        auth_time: now,
        amr: amr.to_owned(),
        pending_mfa,
        created_at: now,
        last_seen_at: now,
        expires_at: now + state.settings().signin.session_ttl_secs,
        ended_at: None,
    };
    state
        .store()
        .add_session(&session)
        .await
        .map_err(|_| LoginError::Unavailable)?;
    Ok(NewSession {
        cookie,
        session,
        user,
    })
}

/// The live session a cookie's value names, with its user (`None`: no such session, ended,
/// expired, or its user is gone or disabled).
pub async fn session_of(
    state: &AppState,
    cookie: &str,
) -> Result<Option<(SessionRow, UserRow)>, castellan_store::StoreError> {
    if cookie.is_empty() || cookie.len() > 128 {
        return Ok(None);
    }
    let now = state.now();
    let Some(s) = state
        .store()
        .session_by_secret(&secret::hash_secret(cookie))
        .await?
        .filter(|s| s.ended_at.is_none() && s.expires_at > now)
    else {
        return Ok(None);
    };
    Ok(state
        .store()
        .user(&s.user_id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .map(|u| (s, u)))
}
