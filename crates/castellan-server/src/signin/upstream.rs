//! Signing a person in through an upstream identity provider (`[[identity_provider]]`): the
//! authorization code flow with PKCE, `state` and `nonce` towards the provider, then Castellan's own
//! session, code and tokens, with a stable `sub` per upstream subject.
//!
//! **Where the sign-in under way lives.** [`start`] stores a row in the store keyed by the SHA-256
//! of the `state` it sends upstream: the provider, the `nonce`, the PKCE verifier and Castellan's own
//! authorization request that waits. [`finish`] takes that row once (a conditional `UPDATE`), so the
//! provider may send the browser back to any replica, a replayed callback finds nothing, and a row
//! lives only [`LOGIN_TTL_SECS`]. The store was chosen over a sealed cookie because it makes the
//! sign-in single use across replicas (a cookie can be replayed until it expires) and keeps the
//! verifier off the browser. The `state` is also set as an `HttpOnly` cookie and must come back in
//! it ([`state_matches`]), so a callback URL started in one browser cannot finish in another's
//! (login CSRF).
//!
//! **Who the person becomes.** The link (provider, upstream `sub`) → user id is in the store. A
//! first sign-in either creates the user, named by the mapped name claim (`first_signin =
//! "create"`), or links the user an administrator created with that name (`"existing"`); a subject
//! outside the entry's allow-list (e-mail domains, with a verified e-mail, or subjects) is refused
//! before anything is written.

use castellan_core::secret;
use castellan_core::signin::{pkce, valid_user_name};
use castellan_store::{StoreError, UpstreamLoginRow, UserRow};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::login::{self, NewSession};
use super::upstream_provider::{IdClaims, IdTokenError, UpstreamProvider};
use crate::config::identity_provider::FirstSignin;
use crate::state::AppState;

/// How long a sign-in may stay at the provider, seconds.
pub const LOGIN_TTL_SECS: i64 = 600;
/// The path the provider sends the browser back to (registered there as the redirect URI).
pub const CALLBACK_PATH: &str = "/signin/upstream/callback";

pub use super::upstream_provider::UpstreamProviders;

/// Why an upstream sign-in did not succeed. Each says in plain words what happened; none carries a
/// token, code or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No provider of that name.
    #[error("there is no identity provider of that name here")]
    UnknownProvider,
    /// No sign-in under way for this `state`: expired, finished before, or never started here.
    #[error("this sign-in has expired or was already finished; start again")]
    Expired,
    /// The `state` cookie of this browser is not the one in the callback.
    #[error("this sign-in was started in another browser (or its cookie was lost); start again")]
    OtherBrowser,
    /// The provider answered with `error=` (the person cancelled, or it refused).
    #[error("the identity provider did not sign you in ({0})")]
    Provider(String),
    /// The provider could not be reached, or answered something unusable.
    #[error(
        "the identity provider could not be reached or gave an unusable answer; try again shortly"
    )]
    Unreachable,
    /// The ID token was refused.
    #[error("{0}")]
    IdToken(IdTokenError),
    /// The authorization response named another issuer (RFC 9207 `iss`).
    #[error("the sign-in response came from another issuer than the configured provider")]
    Issuer,
    /// The subject or its e-mail domain is not allowed.
    #[error("{0}")]
    NotAllowed(String),
    /// `first_signin = "existing"` and no user of that name exists.
    #[error("there is no account here for `{0}`; ask an administrator to create it")]
    NoUser(String),
    /// `first_signin = "create"` and a user of that name exists, not linked to this subject.
    #[error(
        "an account named `{0}` exists already and is not linked to this identity provider; ask an administrator"
    )]
    NameTaken(String),
    /// A mapped claim is missing or unusable.
    #[error("{0}")]
    Claims(String),
    /// The account is disabled.
    #[error("this account is disabled")]
    Disabled,
    /// The store cannot answer now.
    #[error("sign-in is not available right now; try again shortly")]
    Unavailable,
}

fn unavailable<E>(_: E) -> UpstreamError {
    UpstreamError::Unavailable
}

/// A sign-in sent to the provider: where the browser goes, and the `state` its cookie carries.
pub struct Started {
    /// The provider's authorization URL.
    pub redirect: String,
    /// The `state` (also the cookie's value).
    pub state: Zeroizing<String>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

/// Castellan's redirect URI at the provider.
pub fn callback_url(state: &AppState) -> String {
    format!(
        "{}{CALLBACK_PATH}",
        state.settings().issuer.trim_end_matches('/')
    )
}

/// Starts a sign-in at provider `name` for Castellan's authorization request `request` (a checked
/// query string; empty for the account page).
pub async fn start(state: &AppState, name: &str, request: &str) -> Result<Started, UpstreamError> {
    let p = state
        .upstream_providers()
        .and_then(|ps| ps.get(name).cloned())
        .ok_or(UpstreamError::UnknownProvider)?;
    let ep = p.endpoints().await.map_err(|e| {
        tracing::warn!(provider = %p.cfg.name, error = %e, "identity provider: discovery failed");
        UpstreamError::Unreachable
    })?;
    let st = secret::generate_secret().map_err(unavailable)?;
    let nonce = secret::generate_secret().map_err(unavailable)?;
    let verifier = secret::generate_secret().map_err(unavailable)?;
    let now = state.now();
    state
        .store()
        .add_upstream_login(&UpstreamLoginRow {
            state_hash: secret::hash_secret(&st),
            provider: p.cfg.name.clone(),
            nonce: nonce.to_string(),
            pkce_verifier: verifier.to_string(),
            request: request.to_owned(),
            created_at: now,
            expires_at: now + LOGIN_TTL_SECS,
            used_at: None,
        })
        .await
        .map_err(unavailable)?;
    let mut scopes: Vec<&str> = vec!["openid"];
    scopes.extend(
        p.cfg
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "openid"),
    );
    let redirect = super::authorize::redirect_with(
        &ep.authorization_endpoint,
        &[
            ("response_type", Some("code")),
            ("client_id", Some(&p.cfg.client_id)),
            ("redirect_uri", Some(&callback_url(state))),
            ("scope", Some(&scopes.join(" "))),
            ("state", Some(&st)),
            ("nonce", Some(&nonce)),
            ("code_challenge", Some(&pkce::challenge_of(&verifier))),
            ("code_challenge_method", Some("S256")),
        ],
    );
    Ok(Started {
        redirect,
        state: st,
    })
}

/// Whether the callback's `state` is the one this browser's cookie holds (constant time).
pub fn state_matches(cookie: Option<&str>, st: &str) -> bool {
    cookie.is_some_and(|c| !c.is_empty() && bool::from(c.as_bytes().ct_eq(st.as_bytes())))
}

/// The provider's answer at the callback.
#[derive(Debug, Default)]
pub struct Callback {
    /// `state`.
    pub state: String,
    /// `code`, on success.
    pub code: Option<String>,
    /// `error`, on refusal.
    pub error: Option<String>,
    /// RFC 9207 `iss`, when the provider sends it.
    pub iss: Option<String>,
}

/// Takes the sign-in under way that the callback's `state` names, once.
pub async fn take(state: &AppState, cb: &Callback) -> Result<UpstreamLoginRow, UpstreamError> {
    state
        .store()
        .take_upstream_login(&secret::hash_secret(&cb.state), state.now())
        .await
        .map_err(unavailable)?
        .ok_or(UpstreamError::Expired)
}

/// Finishes a sign-in taken with [`take`] when the provider sends the browser back: exchanges the
/// code, checks the ID token, applies the allow-list, finds or makes the user, and makes the
/// session. Castellan's authorization request that waited is `row.request`.
pub async fn finish(
    state: &AppState,
    cb: &Callback,
    row: &UpstreamLoginRow,
) -> Result<NewSession, UpstreamError> {
    let now = state.now();
    let p = state
        .upstream_providers()
        .and_then(|ps| ps.get(&row.provider).cloned())
        .ok_or(UpstreamError::UnknownProvider)?;
    if let Some(e) = &cb.error {
        let code: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(UpstreamError::Provider(code));
    }
    if cb.iss.as_deref().is_some_and(|i| i != p.cfg.issuer) {
        return Err(UpstreamError::Issuer);
    }
    let code = cb
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048);
    let code = code.ok_or_else(|| UpstreamError::Provider("no_code".into()))?;
    let id_token = p
        .exchange(code, &row.pkce_verifier, &callback_url(state))
        .await
        .map_err(|e| {
            tracing::warn!(provider = %p.cfg.name, error = %e, "identity provider: code exchange failed");
            UpstreamError::Unreachable
        })?;
    let claims = p
        .check_id_token(&id_token, &row.nonce, now)
        .await
        .map_err(|e| {
            tracing::info!(provider = %p.cfg.name, refused = ?e, "identity provider: ID token refused");
            UpstreamError::IdToken(e)
        })?;
    let profile = Profile::of(&p, &claims)?;
    allowed(&p, &claims, &profile)?;
    let user = user_for(state, &p, &claims.sub, &profile, now).await?;
    if user.disabled_at.is_some() {
        return Err(UpstreamError::Disabled);
    }
    tracing::info!(provider = %p.cfg.name, user_id = %user.user_id, "signed in through an identity provider");
    let pending = user.totp_sealed.is_some();
    login::new_session(state, user, "fed", pending, now)
        .await
        .map_err(unavailable)
}

/// What the mapped claims say about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The name here.
    pub name: String,
    /// E-mail, when given.
    pub email: Option<String>,
    /// Whether the provider says the e-mail is verified.
    pub email_verified: bool,
    /// Groups, when mapped.
    pub groups: Vec<String>,
}

impl Profile {
    /// Reads the mapped claims.
    pub fn of(p: &UpstreamProvider, c: &IdClaims) -> Result<Self, UpstreamError> {
        let m = &p.cfg.claims;
        let text = |k: &str| c.rest.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let name = text(&m.name).ok_or_else(|| {
            UpstreamError::Claims(format!(
                "the identity provider did not send the `{}` claim this service names users by",
                m.name
            ))
        })?;
        if !valid_user_name(&name) || name.starts_with("usr_") {
            return Err(UpstreamError::Claims(format!(
                "the identity provider's `{}` claim is not a name this service can use",
                m.name
            )));
        }
        let email = text(&m.email).filter(|e| {
            e.len() <= 254
                && e.contains('@')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        let email_verified = match c.rest.get("email_verified") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        let mut groups: Vec<String> = Vec::new();
        if let Some(g) = m
            .groups
            .as_deref()
            .and_then(|k| c.rest.get(k))
            .and_then(|v| v.as_array())
        {
            for s in g.iter().filter_map(|v| v.as_str()) {
                if castellan_core::token::valid_scope_token(s)
                    && s.len() <= 128
                    && !groups.iter().any(|x| x == s)
                {
                    groups.push(s.to_owned());
                }
            }
        }
        Ok(Self {
            name,
            email,
            email_verified,
            groups,
        })
    }
}

/// The entry's allow-list: a listed subject, or a verified e-mail in a listed domain.
pub fn allowed(p: &UpstreamProvider, c: &IdClaims, profile: &Profile) -> Result<(), UpstreamError> {
    if p.cfg.allowed_subjects.iter().any(|s| *s == c.sub) {
        return Ok(());
    }
    if p.cfg.allowed_email_domains.is_empty() {
        return Err(UpstreamError::NotAllowed(
            "your account at the identity provider is not allowed to sign in here".into(),
        ));
    }
    let Some(email) = &profile.email else {
        return Err(UpstreamError::NotAllowed(
            "the identity provider did not send an e-mail address, which this service needs to let you in".into(),
        ));
    };
    let domain = email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    if !p.cfg.allowed_email_domains.iter().any(|d| *d == domain) {
        return Err(UpstreamError::NotAllowed(format!(
            "e-mail addresses at `{domain}` are not allowed to sign in here"
        )));
    }
    if !profile.email_verified {
        return Err(UpstreamError::NotAllowed(
            "the identity provider has not verified your e-mail address".into(),
        ));
    }
    Ok(())
}

/// The user linked to this subject, or the first sign-in's: created, or the pre-created one linked.
async fn user_for(
    state: &AppState,
    p: &UpstreamProvider,
    sub: &str,
    profile: &Profile,
    now: i64,
) -> Result<UserRow, UpstreamError> {
    let store = state.store();
    let provider = p.cfg.name.as_str();
    if let Some(id) = store
        .upstream_link(provider, sub)
        .await
        .map_err(unavailable)?
    {
        return store
            .user(&id)
            .await
            .map_err(unavailable)?
            .ok_or(UpstreamError::Unavailable);
    }
    match p.cfg.first_signin {
        FirstSignin::Existing => {
            let u = store
                .user_by_name(&profile.name)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| UpstreamError::NoUser(profile.name.clone()))?;
            // Another subject of this provider holds the account already: never a second one.
            if store
                .upstream_linked_user(provider, &u.user_id)
                .await
                .map_err(unavailable)?
            {
                return Err(UpstreamError::NameTaken(profile.name.clone()));
            }
            match store.link_upstream(provider, sub, &u.user_id, now).await {
                Ok(()) => Ok(u),
                // Linked a moment ago by a sign-in at once: use that link.
                Err(StoreError::Conflict(_)) => linked(state, provider, sub).await,
                Err(_) => Err(UpstreamError::Unavailable),
            }
        }
        FirstSignin::Create => {
            let u = UserRow {
                user_id: secret::random_id("usr_", 12).map_err(unavailable)?,
                name: profile.name.clone(),
                email: profile.email.clone(),
                password_hash: None,
                groups: profile.groups.join(" "),
                claims: "{}".into(),
                disabled_at: None,
                totp_dek_id: None,
                totp_sealed: None,
                totp_required: false,
                created_at: now,
                updated_at: now,
            };
            match store.add_upstream_user(&u, provider, sub).await {
                Ok(()) => {
                    tracing::info!(provider, user_id = %u.user_id, "user created at first upstream sign-in");
                    Ok(u)
                }
                Err(StoreError::Conflict(what)) if what.starts_with("a user named") => {
                    // The name is taken: by this subject's own user a moment ago, or by another.
                    match store
                        .upstream_link(provider, sub)
                        .await
                        .map_err(unavailable)?
                    {
                        Some(_) => linked(state, provider, sub).await,
                        None => Err(UpstreamError::NameTaken(profile.name.clone())),
                    }
                }
                Err(StoreError::Conflict(_)) => linked(state, provider, sub).await,
                Err(_) => Err(UpstreamError::Unavailable),
            }
        }
    }
}

async fn linked(state: &AppState, provider: &str, sub: &str) -> Result<UserRow, UpstreamError> {
    let id = state
        .store()
        .upstream_link(provider, sub)
        .await
        .map_err(unavailable)?
        .ok_or(UpstreamError::Unavailable)?;
    state
        .store()
        .user(&id)
        .await
        .map_err(unavailable)?
        .ok_or(UpstreamError::Unavailable)
}
