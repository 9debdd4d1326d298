//! The second factor: enrolling a TOTP authenticator on the account page (its secret sealed at rest,
//! recovery codes kept as hashes) and passing it at sign-in.

use castellan_core::secret;
use castellan_core::signin::totp;
use castellan_store::UserRow;
use zeroize::Zeroizing;

use super::login::{LoginError, NewSession, refuse_if_throttled, throttle_keys};
use super::opaque;
use crate::data_keys::{data_key, newest_data_key};
use crate::error::ServiceError;
use crate::state::AppState;

/// A secret offered for enrolment: base32 for typing, and the `otpauth://` URI for the QR code.
pub struct Offer {
    /// Base32.
    pub secret: Zeroizing<String>,
    /// `otpauth://…`
    pub uri: Zeroizing<String>,
}

/// A fresh secret to offer `user`.
pub fn offer(user: &UserRow) -> Result<Offer, ServiceError> {
    let s = totp::new_secret()?;
    Ok(Offer {
        secret: totp::encode(&s),
        uri: Zeroizing::new(totp::otpauth_uri(&s, "Castellan", &user.name)),
    })
}

fn sealing_context(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// Confirms an enrolment: `code` must be the offered secret's code now. Stores the secret sealed and
/// returns new recovery codes (shown once).
pub async fn enrol(
    state: &AppState,
    user: &UserRow,
    secret_b32: &str,
    code: &str,
) -> Result<Vec<String>, ServiceError> {
    let secret = totp::decode(secret_b32)
        .ok_or_else(|| ServiceError::Invalid("the secret is not valid; start again".into()))?;
    let Some(step) = totp::verify(&secret, code, state.now()) else {
        return Err(ServiceError::Invalid(
            "that code is not the one the app shows now; check the app's clock and try again"
                .into(),
        ));
    };
    let dek = newest_data_key(state.store(), state.master()).await?;
    let sealed = dek.seal(&sealing_context(&user.user_id), &secret)?;
    let (codes, hashes) = totp::recovery_codes()?;
    state
        .store()
        .set_totp(&user.user_id, dek.id(), &sealed, &hashes, state.now())
        .await?;
    // The code that confirmed the enrolment does not also pass a sign-in.
    state.store().use_totp_step(&user.user_id, step).await?;
    Ok(codes)
}

/// Passes the second factor of a pending session (a TOTP code or an unused recovery code): the
/// session gets a new cookie value (a fresh id at the end of sign-in) and `otp` among its methods.
pub async fn second_factor(
    state: &AppState,
    cookie: &str,
    code: &str,
) -> Result<NewSession, LoginError> {
    let now = state.now();
    let store = state.store();
    let session = store
        .session_by_secret(&secret::hash_secret(cookie))
        .await
        .map_err(|_| LoginError::Unavailable)?
        .filter(|s| s.pending_mfa && s.ended_at.is_none() && s.expires_at > now)
        .ok_or(LoginError::Failed)?;
    let user = store
        .user(&session.user_id)
        .await
        .map_err(|_| LoginError::Unavailable)?
        .filter(|u| u.disabled_at.is_none())
        .ok_or(LoginError::Failed)?;
    let limits = state.settings().signin.throttle;
    let key = throttle_keys(&user.name, None).remove(0);
    refuse_if_throttled(state, &[&key], now).await?;
    let ok = match (&user.totp_dek_id, &user.totp_sealed) {
        (Some(dek_id), Some(sealed)) => {
            let dek = data_key(store, state.master(), dek_id)
                .await
                .map_err(|_| LoginError::Unavailable)?;
            let secret = dek
                .open(&sealing_context(&user.user_id), sealed)
                .map_err(|_| LoginError::Unavailable)?;
            let fresh = match totp::verify(&secret, code, now) {
                Some(step) => store
                    .use_totp_step(&user.user_id, step)
                    .await
                    .map_err(|_| LoginError::Unavailable)?,
                None => false,
            };
            fresh
                || store
                    .use_recovery_code(&user.user_id, &totp::recovery_hash(code), now)
                    .await
                    .map_err(|_| LoginError::Unavailable)?
        }
        _ => false,
    };
    if !ok {
        let _ = store
            .record_signin_failure(&[&key], limits.window_secs, now)
            .await;
        let _ = crate::audit::events::signin(
            state,
            "signin.second_factor",
            Some(&user.user_id),
            None,
            Err("wrong code"),
        )
        .await;
        return Err(LoginError::Failed);
    }
    let (new_cookie, new_hash) = opaque().map_err(|_| LoginError::Unavailable)?;
    if !store
        .complete_mfa(&session.sid, &new_hash, "pwd otp", now)
        .await
        .map_err(|_| LoginError::Unavailable)?
    {
        return Err(LoginError::Failed);
    }
    let session = store
        .session(&session.sid)
        .await
        .map_err(|_| LoginError::Unavailable)?
        .ok_or(LoginError::Failed)?;
    crate::audit::events::signin(
        state,
        "signin.second_factor",
        Some(&user.user_id),
        None,
        Ok(&session.sid),
    )
    .await
    .map_err(|_| LoginError::Unavailable)?;
    Ok(NewSession {
        cookie: new_cookie,
        session,
        user,
    })
}
