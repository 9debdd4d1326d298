//! Which audience a token is for (issue 18, RFC 8707 / RFC 8693 `audience`): the client's default
//! audience unless the request picks one of those its policy allows.
//!
//! A client's default audience is its `--audience`; a client created without one has Castellan's
//! own API as its audience (the issuer, what the `/v1` bearer check requires), so the admin, agents
//! and every existing client keep working. Tokens meant for another service carry that service's
//! audience, never the issuer: give such a client `--audience`, or allow it more with a policy.

use castellan_store::ClientRow;

use super::TokenError;
use crate::state::AppState;

/// The client's default audience: its own, or else Castellan's API (the issuer).
pub(crate) fn default_audience(state: &AppState, client: &ClientRow) -> String {
    client
        .audience
        .clone()
        .unwrap_or_else(|| state.settings().issuer.clone())
}

/// Whether `client` may have tokens for `aud`: its default audience, or one its policy allows.
pub(crate) fn allowed(state: &AppState, client: &ClientRow, aud: &str) -> bool {
    aud == default_audience(state, client)
        || client
            .policy
            .as_ref()
            .is_some_and(|p| p.audiences.split(' ').any(|a| a == aud))
}

/// The audience of a token for `client`: `requested` when it may have it (`invalid_target` when not),
/// its default audience when nothing is asked for.
pub(crate) fn pick(
    state: &AppState,
    client: &ClientRow,
    requested: Option<&str>,
) -> Result<String, TokenError> {
    match requested {
        None => Ok(default_audience(state, client)),
        Some(aud) if allowed(state, client, aud) => Ok(aud.to_owned()),
        Some(aud) => Err(TokenError::InvalidTarget(format!(
            "the client may not have tokens for `{}`",
            aud.chars().take(128).collect::<String>().escape_debug()
        ))),
    }
}
