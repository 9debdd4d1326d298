//! Which certificate names a caller may be issued (issue 21): the profile's patterns, intersected with
//! the patterns stored with the caller's client, and never the names of Castellan's own API.
//!
//! * A client created with certificate name patterns (`client create --cert-name PATTERN`,
//!   `cert_names` in `POST /v1/clients`) is issued only names that match the profile *and* its
//!   patterns.
//! * A client without patterns: outside `--dev` it is refused, with a message naming the flag; in
//!   `--dev` the profile alone bounds it (the default profiles keep working on a laptop).
//! * A caller holding `admin` is bounded by the profile alone (it can give itself any pattern anyway).
//! * Castellan's own API names (its TLS names and the public URL's host) are refused to everyone unless
//!   `pki.issue_castellan_names = true`: a certificate for them from the CA every service trusts would
//!   let its holder impersonate the server that holds every secret and signs every token.
//! * Scopes per profile: `pki:issue` issues from every profile, `pki:issue:PROFILE` from that one.
//!
//! The operator's `castellan pki issue` on the store itself (master key in hand) is bounded by the
//! profile alone.

use castellan_core::pki::{ClientPatterns, IssueRequest, IssuedSet, NameBounds, Profile, Profiles};
use castellan_core::token::AccessClaims;
use castellan_store::ClientRow;

use crate::error::ServiceError;
use crate::pki;
use crate::state::AppState;

pub use crate::state::CertNamePolicy;

/// Whether `scopes` (space-separated) may issue from `profile`: `admin`, `pki:issue` or
/// `pki:issue:PROFILE`.
pub fn may_issue(scopes: &str, profile: &str) -> bool {
    scopes
        .split(' ')
        .any(|s| s == "admin" || s == "pki:issue" || s.strip_prefix("pki:issue:") == Some(profile))
}

/// The stored patterns of a client, parsed.
pub fn client_patterns(client: &ClientRow) -> Result<Option<ClientPatterns>, ServiceError> {
    client
        .cert_names
        .as_deref()
        .map(|s| {
            ClientPatterns::parse(&s.split(' ').collect::<Vec<_>>()).map_err(|e| {
                ServiceError::Invalid(format!("the stored certificate names of a client: {e}"))
            })
        })
        .transpose()
}

/// The profile `name` as it applies to `client` holding `scopes` (see the module documentation).
pub fn profile_for(
    policy: &CertNamePolicy,
    profiles: &Profiles,
    name: &str,
    client: &ClientRow,
    scopes: &str,
) -> Result<Profile, ServiceError> {
    if !may_issue(scopes, name) {
        return Err(ServiceError::Forbidden(format!(
            "the token lacks the `pki:issue` scope (or `pki:issue:{name}` for this profile)"
        )));
    }
    let profile = profiles.get(name)?;
    let admin = scopes.split(' ').any(|s| s == "admin");
    let patterns = if admin {
        None
    } else {
        match client_patterns(client)? {
            Some(p) => Some(p),
            None if policy.dev => None,
            None => {
                return Err(ServiceError::Forbidden(format!(
                    "client `{}` has no certificate name patterns, so it may not be issued any name: create it with \
                     `castellan client create {} --scope pki:issue --cert-name PATTERN` (for example --cert-name \
                     '*.svc.local' --cert-name 10.0.0.0/8; `cert_names` in POST /v1/clients)",
                    client.name, client.name
                )));
            }
        }
    };
    let reserved = if policy.issue_castellan_names {
        Vec::new()
    } else {
        policy.castellan_names.clone()
    };
    Ok(profile.bounded(NameBounds {
        owner: format!("client `{}`", client.name),
        patterns,
        reserved,
    }))
}

/// Checks the patterns a caller gives a new client and returns them in stored form: a caller holding
/// `admin` gives any; another only patterns its own cover (so it cannot widen what it may be issued
/// by making a client).
pub fn patterns_to_give(
    given: &[String],
    caller: &ClientRow,
    caller_scopes: &str,
) -> Result<Option<String>, ServiceError> {
    if given.is_empty() {
        return Ok(None);
    }
    let asked = ClientPatterns::parse(given).map_err(ServiceError::Invalid)?;
    if !caller_scopes.split(' ').any(|s| s == "admin") {
        let uncovered = match client_patterns(caller)? {
            Some(mine) => mine.first_uncovered(&asked),
            None => asked.to_strings().into_iter().next(),
        };
        if let Some(p) = uncovered {
            return Err(ServiceError::Forbidden(format!(
                "the token cannot give the certificate name pattern `{p}`: a caller without `admin` gives only \
                 patterns its own client's patterns cover"
            )));
        }
    }
    Ok(Some(asked.to_strings().join(" ")))
}

/// Issues a certificate to the caller of `claims` under `profile`, bounded for it (see the module
/// documentation): with a key made here, or for the key of `csr`.
pub async fn issue_as(
    state: &AppState,
    claims: &AccessClaims,
    profile: &str,
    csr: Option<&str>,
    req: &IssueRequest,
) -> Result<IssuedSet, ServiceError> {
    let client = state.caller(claims).await?;
    let settings = state.settings();
    let bounded = profile_for(
        &settings.cert_names,
        &settings.profiles,
        profile,
        &client,
        &claims.scope,
    )?;
    let (ca, now) = (state.ca(), state.now());
    match csr {
        None => pki::issue_with(state.certs(), &ca, &bounded, req, now).await,
        Some(csr) => pki::sign_csr_with(state.certs(), &ca, &bounded, csr, req, now).await,
    }
}
