//! PKI over Castellan's profiles as roles.

use axum::response::Response;

use super::{VaultError, VaultRequest};
use crate::state::AppState;
use crate::vault_tokens::VaultSettings;

/// The PKI mount's paths Vault answers without a token (the CA, the CRL, certificates by serial).
pub(super) fn is_public_path(v: &VaultSettings, rest: &str) -> bool {
    let Some(p) = rest
        .strip_prefix(v.pki_mount.as_str())
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    matches!(
        p,
        "ca/pem" | "ca_chain" | "cert/ca_chain" | "crl/pem" | "cert/crl"
    ) || p.starts_with("cert/")
}

pub(super) async fn route(
    state: &AppState,
    _r: &VaultRequest,
    rest: &[&str],
) -> Result<Response, VaultError> {
    Err(VaultError::no_route(&format!(
        "{}/{}",
        state.vault().settings().pki_mount,
        rest.join("/")
    )))
}
