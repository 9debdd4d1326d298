//! The signing API's use case (issue 18): an existing service has Castellan sign a token with the
//! key ring's current key, within its client's policy. Castellan sets `iss iat nbf exp jti` (and
//! `client_id` for an `at+jwt`); the caller chooses `sub`, `aud`, the lifetime and the extra claims
//! its policy allows.
//!
//! Signed tokens never carry `scope`: they cannot pass Castellan's own `/v1` check or be exchanged,
//! and the issuer (Castellan's own audience) is never one they are signed for.

use castellan_core::secret;
use castellan_core::token::{SigningKey, sign_jwt};
use castellan_store::ClientRow;
use castellan_wire::sign::{SignRequest, SignedToken};
use serde_json::{Map, Value};

use crate::client_policies::{RESERVED_CLAIMS, SIGN_TYPES, matches};

/// The rule of the client's policy a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignRule {
    /// The client has no token policy.
    Policy,
    /// `aud` is not one the policy allows.
    Audience,
    /// The lifetime is above the policy's maximum.
    Lifetime,
    /// An extra claim the policy does not allow.
    Claims,
    /// A claim Castellan sets (`iss`, `exp`, …).
    RegisteredClaim,
    /// `sub` does not match the policy's pattern.
    Sub,
    /// `typ` is not the policy's.
    Typ,
}

impl SignRule {
    /// Its name in the refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            SignRule::Policy => "policy",
            SignRule::Audience => "audience",
            SignRule::Lifetime => "lifetime",
            SignRule::Claims => "claims",
            SignRule::RegisteredClaim => "registered-claim",
            SignRule::Sub => "sub",
            SignRule::Typ => "typ",
        }
    }
}

/// Why nothing was signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// Outside the client's policy (403 with the rule).
    #[error("{1}")]
    Refused(SignRule, String),
    /// Malformed request (400).
    #[error("{0}")]
    Invalid(String),
    /// No key of the ring signs now.
    #[error("no signing key is active")]
    NoSigningKey,
    /// Signing or randomness failed.
    #[error("the token could not be signed")]
    Internal,
}

/// What signing needs besides the request: the issuer and the lifetimes in force.
#[derive(Debug, Clone)]
pub struct SignContext<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `tokens.default_ttl`, seconds.
    pub default_ttl_secs: i64,
    /// `tokens.max_ttl`, seconds (the key ring's retirement window is planned for it).
    pub max_ttl_secs: i64,
    /// Now, seconds since the epoch.
    pub now: i64,
}

fn refused(rule: SignRule, m: impl Into<String>) -> SignError {
    SignError::Refused(rule, m.into())
}

/// Checks `req` against `client`'s policy and signs it with `key`.
pub fn sign(
    key: &SigningKey,
    ctx: &SignContext<'_>,
    client: &ClientRow,
    req: SignRequest,
) -> Result<SignedToken, SignError> {
    let policy = client.policy.as_ref().ok_or_else(|| {
        refused(
            SignRule::Policy,
            "the client has no token policy (`castellan client policy`)",
        )
    })?;
    let shown = |s: &str| {
        s.chars()
            .take(128)
            .collect::<String>()
            .escape_debug()
            .to_string()
    };
    if req.aud == ctx.issuer {
        return Err(refused(
            SignRule::Audience,
            "the issuer is Castellan's own API: the signing API never signs for it",
        ));
    }
    let aud_ok = client.audience.as_deref() == Some(req.aud.as_str())
        || policy.audiences.split(' ').any(|a| a == req.aud);
    if !aud_ok {
        return Err(refused(
            SignRule::Audience,
            format!("the policy does not allow audience `{}`", shown(&req.aud)),
        ));
    }
    let max = if policy.sign_max_ttl_secs > 0 {
        policy.sign_max_ttl_secs
    } else {
        ctx.default_ttl_secs
    }
    .min(ctx.max_ttl_secs);
    let lifetime = req.lifetime_secs.unwrap_or(max);
    if lifetime <= 0 {
        return Err(SignError::Invalid("lifetime_secs must be positive".into()));
    }
    if lifetime > max {
        return Err(refused(
            SignRule::Lifetime,
            format!("lifetime {lifetime}s is above the policy's maximum of {max}s"),
        ));
    }
    let sub_ok = if policy.sign_sub.is_empty() {
        req.sub == client.client_id
    } else {
        matches(&policy.sign_sub, &req.sub)
    };
    if req.sub.is_empty() || req.sub.len() > 256 || !sub_ok {
        return Err(refused(
            SignRule::Sub,
            format!(
                "sub `{}` does not match the policy's pattern `{}`",
                shown(&req.sub),
                if policy.sign_sub.is_empty() {
                    &client.client_id
                } else {
                    &policy.sign_sub
                }
            ),
        ));
    }
    let typ = req.typ.as_deref().unwrap_or(&policy.sign_typ);
    if typ != policy.sign_typ || !SIGN_TYPES.contains(&typ) {
        return Err(refused(
            SignRule::Typ,
            format!(
                "typ `{}` is not the policy's `{}`",
                shown(typ),
                policy.sign_typ
            ),
        ));
    }
    if let Some(c) = req
        .claims
        .keys()
        .find(|c| RESERVED_CLAIMS.contains(&c.as_str()))
    {
        return Err(refused(
            SignRule::RegisteredClaim,
            format!("`{c}` is set by Castellan and cannot be overridden"),
        ));
    }
    if let Some(c) = req
        .claims
        .keys()
        .find(|c| !policy.sign_claims.split(' ').any(|a| a == c.as_str()))
    {
        return Err(refused(
            SignRule::Claims,
            format!("the policy does not allow the claim `{}`", shown(c)),
        ));
    }
    let jti = secret::random_id("", 16).map_err(|_| SignError::Internal)?;
    let exp = ctx.now + lifetime;
    let mut claims = Map::with_capacity(8 + req.claims.len());
    claims.insert("iss".into(), Value::from(ctx.issuer));
    claims.insert("sub".into(), Value::from(req.sub));
    claims.insert("aud".into(), Value::from(req.aud));
    claims.insert("exp".into(), Value::from(exp));
    claims.insert("iat".into(), Value::from(ctx.now));
    claims.insert("nbf".into(), Value::from(ctx.now));
    claims.insert("jti".into(), Value::from(jti.as_str()));
    if typ == "at+jwt" {
        // RFC 9068 §2.2: an access token names the client it was issued to.
        claims.insert("client_id".into(), Value::from(client.client_id.as_str()));
    }
    claims.extend(req.claims);
    let token = sign_jwt(key, typ, &claims).map_err(|_| SignError::Internal)?;
    Ok(SignedToken {
        token,
        kid: key.kid().to_owned(),
        jti,
        typ: typ.to_owned(),
        expires_at: exp,
    })
}
