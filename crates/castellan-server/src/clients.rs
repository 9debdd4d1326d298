//! Clients: creating, listing and deleting them, and the rules for the scopes one may be given.

use castellan_core::secret;
use castellan_core::secret_store;
use castellan_core::signin::redirect;
use castellan_store::{ClientApp, ClientRow, Store};
pub use castellan_wire::clients::{AppRegistration, ClientInfo, CreatedClient, NewClient};
use zeroize::Zeroizing;

use crate::error::ServiceError;

/// A client as shown to people.
fn client_info(c: &ClientRow) -> ClientInfo {
    ClientInfo {
        client_id: c.client_id.clone(),
        name: c.name.clone(),
        scopes: c.scopes.split_whitespace().map(str::to_owned).collect(),
        audience: c.audience.clone(),
        token_ttl_secs: c.token_ttl_secs,
        created_at: c.created_at,
        app: (c.app != ClientApp::default()).then(|| AppRegistration {
            grant_types: words(&c.app.grant_types),
            redirect_uris: words(&c.app.redirect_uris),
            post_logout_redirect_uris: words(&c.app.post_logout_redirect_uris),
            public: c.app.public_client,
            require_mfa: c.app.require_mfa,
            user_claims: words(&c.app.user_claims),
        }),
        cert_names: c
            .cert_names
            .as_deref()
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

fn words(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The grant types a client may be registered for.
pub const GRANT_TYPES: [&str; 3] = ["client_credentials", "authorization_code", "refresh_token"];

/// Checks an app's registration: grant types, exact redirect URIs (RFC 8252 rules for native apps),
/// post-logout URIs, and that a public client asks for no `client_credentials`.
fn app_settings(app: Option<AppRegistration>) -> Result<ClientApp, ServiceError> {
    let Some(app) = app else {
        return Ok(ClientApp::default());
    };
    let invalid = |m: String| ServiceError::Invalid(m);
    if app.grant_types.is_empty() {
        return Err(invalid("an app needs at least one grant type".into()));
    }
    if let Some(g) = app
        .grant_types
        .iter()
        .find(|g| !GRANT_TYPES.contains(&g.as_str()))
    {
        return Err(invalid(format!(
            "`{}` is not a grant type Castellan issues for (client_credentials, authorization_code, refresh_token)",
            g.escape_debug()
        )));
    }
    let has = |g: &str| app.grant_types.iter().any(|x| x == g);
    if has("authorization_code") && app.redirect_uris.is_empty() {
        return Err(invalid(
            "the authorization_code grant needs at least one --redirect-uri".into(),
        ));
    }
    if has("refresh_token") && !has("authorization_code") {
        return Err(invalid(
            "the refresh_token grant comes with the authorization_code grant".into(),
        ));
    }
    if app.public && has("client_credentials") {
        return Err(invalid(
            "a public client has no secret, so it cannot use client_credentials".into(),
        ));
    }
    for uri in app
        .redirect_uris
        .iter()
        .chain(&app.post_logout_redirect_uris)
    {
        redirect::validate(uri).map_err(|e| invalid(e.to_string()))?;
    }
    if let Some(c) = app.user_claims.iter().find(|c| {
        c.is_empty()
            || c.len() > 64
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    }) {
        return Err(invalid(format!(
            "`{}` is not a claim name",
            c.escape_debug()
        )));
    }
    let mut grants: Vec<&str> = GRANT_TYPES.iter().copied().filter(|g| has(g)).collect();
    grants.dedup();
    Ok(ClientApp {
        redirect_uris: app.redirect_uris.join(" "),
        post_logout_redirect_uris: app.post_logout_redirect_uris.join(" "),
        grant_types: grants.join(" "),
        public_client: app.public,
        require_mfa: app.require_mfa,
        user_claims: app.user_claims.join(" "),
    })
}

pub use castellan_core::token::valid_scope_token;

/// Whether a caller whose token holds `holder` (space-separated scopes) may give a new client `scope`.
///
/// Castellan's own scopes (`admin`, and those under `clients:`, `keys:`, `pki:` and `secrets:`) are
/// given only by a caller who holds them itself: `admin` holds every one, `secrets:read` covers
/// `secrets:read:PREFIX`, and `secrets:read:mqtt` covers `secrets:read:mqtt/broker` (whole segments,
/// as for the secrets themselves). So `clients:admin` alone cannot make an `admin` client, nor a
/// `tokens:sign` one (the signing API). Any other
/// scope is an application's (`invoices:read`): `clients:admin` gives those freely.
pub fn may_grant(holder: &str, scope: &str) -> bool {
    // `tokens:sign` signs for any `sub` its policy allows (issue 18): Castellan's own, like `admin`.
    let own = scope == "admin"
        || scope == "tokens:sign"
        || ["clients:", "keys:", "pki:", "secrets:"]
            .iter()
            .any(|ns| scope.starts_with(ns));
    if !own {
        return true;
    }
    if holder.split(' ').any(|h| h == "admin" || h == scope) {
        return true;
    }
    // `secrets:read:PREFIX` is given by a holder whose scopes would let it read a secret named
    // PREFIX: the same whole-segment rule as for the secrets themselves.
    [
        ("secrets:read:", secret_store::Access::Read),
        ("secrets:write:", secret_store::Access::Write),
    ]
    .iter()
    .any(|(base, access)| {
        scope
            .strip_prefix(base)
            .is_some_and(|asked| secret_store::scopes_allow(holder, *access, asked))
    })
}

pub(crate) fn new_client_row(
    req: NewClient,
    now: i64,
) -> Result<(ClientRow, Zeroizing<String>), ServiceError> {
    if req.name.is_empty()
        || req.name.len() > 64
        || !req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ServiceError::Invalid(
            "client name must be 1-64 characters of letters, digits, '-', '_' and '.'".into(),
        ));
    }
    if req.name.starts_with("cl_") {
        // `client delete` takes an id or a name: a name that looks like an id could name another
        // client.
        return Err(ServiceError::Invalid(
            "client names may not start with `cl_`, the prefix of client ids".into(),
        ));
    }
    if req.scopes.is_empty() && req.app.is_none() {
        return Err(ServiceError::Invalid(
            "a client needs at least one scope".into(),
        ));
    }
    if let Some(bad) = req.scopes.iter().find(|s| !valid_scope_token(s)) {
        return Err(ServiceError::Invalid(format!(
            "`{bad}` is not a valid scope (no spaces, quotes or backslashes)"
        )));
    }
    if let Some(aud) = &req.audience
        && (aud.is_empty() || aud.len() > 512 || aud.chars().any(char::is_whitespace))
    {
        return Err(ServiceError::Invalid(
            "audience must be 1-512 characters without spaces".into(),
        ));
    }
    let ttl = req.token_ttl_secs.unwrap_or(0);
    if ttl < 0 {
        return Err(ServiceError::Invalid("token TTL must be positive".into()));
    }
    let app = app_settings(req.app)?;
    let secret = if app.public_client {
        Zeroizing::new(String::new())
    } else {
        secret::generate_secret()?
    };
    let cert_names = if req.cert_names.is_empty() {
        None
    } else {
        let p = castellan_core::pki::ClientPatterns::parse(&req.cert_names)
            .map_err(ServiceError::Invalid)?;
        Some(p.to_strings().join(" "))
    };
    let row = ClientRow {
        client_id: secret::random_id("cl_", 12)?,
        name: req.name,
        // A public client has no secret: an empty hash, which no presented secret matches.
        secret_hash: if app.public_client {
            Vec::new()
        } else {
            secret::hash_secret(&secret)
        },
        scopes: req.scopes.join(" "),
        audience: req.audience,
        token_ttl_secs: ttl,
        created_at: now,
        app,
        cert_names,
        policy: None,
    };
    Ok((row, secret))
}

/// Creates a client; `max_ttl_secs` bounds its token lifetime.
pub async fn create_client(
    store: &Store,
    req: NewClient,
    max_ttl_secs: i64,
    now: i64,
) -> Result<CreatedClient, ServiceError> {
    if let Some(ttl) = req.token_ttl_secs
        && ttl > max_ttl_secs
    {
        return Err(ServiceError::Invalid(format!(
            "token TTL {ttl}s is above the maximum of {max_ttl_secs}s (tokens.max_ttl)"
        )));
    }
    let (row, secret) = new_client_row(req, now)?;
    store.add_client(&row).await?;
    Ok(CreatedClient {
        client: client_info(&row),
        client_secret: secret.to_string(),
    })
}

/// Creates a client for a caller (the API): Castellan's own scopes only as [`may_grant`] allows, and
/// certificate name patterns only as [`crate::cert_names::patterns_to_give`] allows.
pub async fn create_client_as(
    store: &Store,
    caller: &ClientRow,
    caller_scopes: &str,
    req: NewClient,
    max_ttl_secs: i64,
    now: i64,
) -> Result<CreatedClient, ServiceError> {
    if let Some(s) = req.scopes.iter().find(|s| !may_grant(caller_scopes, s)) {
        return Err(ServiceError::Forbidden(format!(
            "the token cannot give `{s}`: a client is given Castellan's own scopes only by a caller that holds them"
        )));
    }
    crate::cert_names::patterns_to_give(&req.cert_names, caller, caller_scopes)?;
    create_client(store, req, max_ttl_secs, now).await
}

/// Lists clients.
pub async fn list_clients(store: &Store) -> Result<Vec<ClientInfo>, ServiceError> {
    Ok(store.clients().await?.iter().map(client_info).collect())
}

/// Deletes a client by id or name.
/// Deletes a client for a caller whose token holds `holder`: a client holding Castellan's own scopes
/// is deleted only by a caller that could have given them ([`may_grant`], the creation rule), so
/// `clients:admin` alone cannot delete an `admin` client such as the bootstrap admin. The client is
/// found first and deleted by its id, so a client renamed in between is not the one deleted.
pub async fn delete_client_as(
    store: &Store,
    holder: &str,
    id_or_name: &str,
) -> Result<(), ServiceError> {
    let not_found = || ServiceError::NotFound(format!("client `{id_or_name}`"));
    let row = store
        .client_by_id_or_name(id_or_name)
        .await?
        .ok_or_else(not_found)?;
    if let Some(s) = row.scopes.split(' ').find(|s| !may_grant(holder, s)) {
        return Err(ServiceError::Forbidden(format!(
            "the token cannot delete a client that holds `{s}`: a client with Castellan's own scopes is deleted only by a caller that holds them"
        )));
    }
    delete_client(store, &row.client_id).await
}

/// Deletes a client by id, or by name when no id matches (the operator's `client delete` on the store).
pub async fn delete_client(store: &Store, id_or_name: &str) -> Result<(), ServiceError> {
    if store.delete_client(id_or_name).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!("client `{id_or_name}`")))
    }
}
