//! The credential a new client is handed: `client create --json` prints one that `castellan token
//! --credential` accepts (with the token endpoint), `--credential-out FILE` writes one with mode 0600.

use std::path::Path;

use anyhow::{Context, Result, bail};
use castellan_files::Reserved;
use castellan_wire::{CreatedClient, CredentialFile};

/// Reserves the `--credential-out` file before the client is created, so that a missing directory or
/// a path that is not a regular file fails with nothing created; a public client (no secret) is
/// refused here too.
pub fn reserve(path: Option<&Path>, public: bool) -> Result<Option<Reserved>> {
    let Some(path) = path else { return Ok(None) };
    if public {
        bail!(
            "--credential-out: a public client has no secret, so there is no credential to write"
        );
    }
    Reserved::new(path, 0o600)
        .map(Some)
        .with_context(|| format!("--credential-out {} is not writable", path.display()))
}

/// The token endpoint the new client's credential names: the server the command went through, or the
/// store's issuer.
pub fn token_endpoint(base: &str) -> String {
    format!("{}/oauth2/token", base.trim_end_matches('/'))
}

/// `client create --json`: the created client with its token endpoint, which is also a credential
/// file (`client_id`, `client_secret`, `token_endpoint`) for `castellan token --credential`.
pub fn created_json(created: &CreatedClient, endpoint: &str) -> Result<zeroize::Zeroizing<String>> {
    let mut value = serde_json::to_value(created)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("token_endpoint".into(), endpoint.into());
    }
    let text = zeroize::Zeroizing::new(serde_json::to_string_pretty(&value)?);
    if let Some(obj) = value.as_object_mut()
        && let Some(serde_json::Value::String(secret)) = obj.get_mut("client_secret")
    {
        zeroize::Zeroize::zeroize(secret);
    }
    Ok(text)
}

/// Writes the credential file of the new client into the reserved file.
pub fn write(file: Reserved, path: &Path, created: &CreatedClient, endpoint: &str) -> Result<()> {
    let cred = CredentialFile {
        client_id: created.client.client_id.clone(),
        client_secret: created.client_secret.clone(),
        token_endpoint: Some(endpoint.to_owned()),
    };
    let mut bytes = zeroize::Zeroizing::new(serde_json::to_vec_pretty(&cred)?);
    bytes.push(b'\n');
    file.commit(&bytes)
        .with_context(|| format!("writing {}", path.display()))
}
