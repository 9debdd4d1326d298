//! KV version 2 over Castellan's secrets: `{mount}/data/{path}` (read with `version`, write with
//! `options.cas`, delete), `{mount}/metadata/{path}` (read, list, delete) and `{mount}/config`.
//!
//! One secret, two views (docs/vault-compat.md): a KV secret is a JSON object of string values. Written
//! through KV it is stored as that object's JSON text (keys sorted), except an object whose only key is
//! `value` (and whose value is not itself a JSON object), which is stored as the value's bytes alone —
//! what the native API, the CLI and the agent see as a single value. Read through KV, a stored value
//! that is a JSON object of strings is that object; any other value is `{"value": TEXT}` (or
//! `{"value_base64": ...}` when it is not UTF-8).
//!
//! Castellan keeps no soft-deleted versions: deleting the latest version deletes the secret (every
//! version), and `undelete`, `destroy` and `delete` of chosen versions answer 405.

use axum::http::Method;
use axum::response::Response;
use base64::Engine;
use castellan_core::secret_store::{self, Access, KEEP_VERSIONS, SecretValue};
use serde_json::{Map, Value, json};

use super::{VaultError, VaultRequest, caller, data_response, no_content, vault_time};
use crate::secrets;
use crate::state::AppState;

pub(super) async fn route(
    state: &AppState,
    r: &VaultRequest,
    rest: &[&str],
) -> Result<Response, VaultError> {
    let m = &r.method;
    match rest {
        ["data", path @ ..] if !path.is_empty() => match *m {
            Method::GET => read(state, r, &path.join("/")).await,
            Method::POST | Method::PUT => write(state, r, &path.join("/")).await,
            Method::DELETE => delete(state, r, &path.join("/")).await,
            _ => Err(VaultError::unsupported()),
        },
        ["metadata", path @ ..] => {
            let name = path.join("/");
            match m.as_str() {
                "LIST" => list(state, r, name.trim_end_matches('/')).await,
                "GET" if !name.is_empty() => metadata(state, r, &name).await,
                "DELETE" if !name.is_empty() => delete(state, r, &name).await,
                _ => Err(VaultError::unsupported_because(
                    "Castellan keeps no custom metadata or per-secret settings",
                )),
            }
        }
        ["config"] if *m == Method::GET => {
            caller(state, r).await?;
            Ok(data_response(json!({
                "cas_required": false,
                "delete_version_after": "0s",
                "max_versions": KEEP_VERSIONS,
            })))
        }
        ["delete" | "undelete" | "destroy", ..] => Err(VaultError::unsupported_because(
            "Castellan keeps no deleted versions: delete the secret (data/PATH or metadata/PATH) instead",
        )),
        _ => Err(VaultError::no_route(&format!(
            "{}/{}",
            state.vault().settings().kv_mount,
            rest.join("/")
        ))),
    }
}

/// The caller, allowed `access` to `name` by its scopes (checked before the store is read, so a
/// refusal says nothing about whether the secret exists).
async fn allowed(
    state: &AppState,
    r: &VaultRequest,
    access: Access,
    name: &str,
) -> Result<std::sync::Arc<castellan_core::token::AccessClaims>, VaultError> {
    let (_, claims) = caller(state, r).await?;
    secret_store::validate_name(name).map_err(|e| VaultError::bad_request(e.to_string()))?;
    if !secret_store::scopes_allow(&claims.scope, access, name) {
        return Err(VaultError::forbidden("permission denied".into()));
    }
    Ok(claims)
}

/// The KV view of a stored value (see the module documentation).
pub(crate) fn to_kv(value: &[u8]) -> Map<String, Value> {
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(value)
        && m.values().all(Value::is_string)
    {
        return m;
    }
    let mut m = Map::new();
    match std::str::from_utf8(value) {
        Ok(s) => m.insert("value".into(), Value::String(s.to_owned())),
        Err(_) => m.insert(
            "value_base64".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(value)),
        ),
    };
    m
}

/// The stored value of a KV object (see the module documentation).
pub(crate) fn from_kv(data: &Map<String, Value>) -> Result<Vec<u8>, VaultError> {
    if let Some((k, v)) = data.iter().find(|(_, v)| !v.is_string()) {
        return Err(VaultError::bad_request(format!(
            "the value of {k:?} is {}: Castellan's KV values are strings",
            match v {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::Array(_) => "an array",
                _ => "an object",
            }
        )));
    }
    if data.len() == 1
        && let Some(Value::String(s)) = data.get("value")
        && !matches!(serde_json::from_str::<Value>(s), Ok(Value::Object(_)))
    {
        return Ok(s.as_bytes().to_vec());
    }
    serde_json::to_vec(data).map_err(|_| VaultError::internal())
}

async fn read(state: &AppState, r: &VaultRequest, name: &str) -> Result<Response, VaultError> {
    let claims = allowed(state, r, Access::Read, name).await?;
    let version = match r.query("version") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(0) => None,
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(VaultError::bad_request(format!(
                    "version {v:?} is not a number of 0 or more"
                )));
            }
        },
    };
    let s = secrets::get(state.store(), state.master(), name, version).await?;
    tracing::info!(secret = %s.meta.name, version = s.meta.version, client_id = %claims.client_id, "read a secret (vault kv)");
    #[derive(serde::Serialize)]
    struct Read {
        data: Map<String, Value>,
        metadata: VersionMeta,
    }
    Ok(super::typed_response(&Read {
        data: to_kv(s.value.expose()),
        metadata: VersionMeta::new(s.meta.version, s.meta.created_at),
    }))
}

/// A version's metadata, as the KV read and write answer it.
#[derive(serde::Serialize)]
struct VersionMeta {
    created_time: String,
    custom_metadata: Option<()>,
    deletion_time: &'static str,
    destroyed: bool,
    version: i64,
}

impl VersionMeta {
    fn new(version: i64, created_at: i64) -> Self {
        Self {
            created_time: vault_time(created_at),
            custom_metadata: None,
            deletion_time: "",
            destroyed: false,
            version,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    data: Map<String, Value>,
    #[serde(default)]
    options: WriteOptions,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteOptions {
    #[serde(default)]
    cas: Option<i64>,
}

async fn write(state: &AppState, r: &VaultRequest, name: &str) -> Result<Response, VaultError> {
    let claims = allowed(state, r, Access::Write, name).await?;
    let body: WriteBody = r.json()?;
    let value = SecretValue::new(zeroize::Zeroizing::new(from_kv(&body.data)?));
    let meta = secrets::put(
        state.store(),
        state.master(),
        name,
        &value,
        body.options.cas,
        state.now(),
    )
    .await?;
    tracing::info!(secret = %meta.name, version = meta.version, client_id = %claims.client_id, "wrote a secret (vault kv)");
    Ok(super::typed_response(&VersionMeta::new(
        meta.version,
        meta.created_at,
    )))
}

async fn delete(state: &AppState, r: &VaultRequest, name: &str) -> Result<Response, VaultError> {
    let claims = allowed(state, r, Access::Write, name).await?;
    match secrets::delete(state.store(), name).await {
        // Vault answers a delete of what is not there with 204 as well.
        Ok(()) | Err(crate::error::ServiceError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(secret = %name, client_id = %claims.client_id, "deleted a secret (vault kv)");
    Ok(no_content())
}

async fn metadata(state: &AppState, r: &VaultRequest, name: &str) -> Result<Response, VaultError> {
    allowed(state, r, Access::Read, name).await?;
    let versions = state
        .store()
        .secret_versions(name)
        .await
        .map_err(crate::error::ServiceError::Store)?;
    let (Some(&(oldest, created)), Some(&(current, updated))) = (versions.first(), versions.last())
    else {
        return Err(VaultError::not_found());
    };
    let by_version: Map<String, Value> = versions
        .iter()
        .map(|&(v, at)| {
            (
                v.to_string(),
                json!({"created_time": vault_time(at), "deletion_time": "", "destroyed": false}),
            )
        })
        .collect();
    Ok(data_response(json!({
        "cas_required": false,
        "created_time": vault_time(created),
        "current_version": current,
        "custom_metadata": null,
        "delete_version_after": "0s",
        "max_versions": KEEP_VERSIONS,
        "oldest_version": oldest,
        "updated_time": vault_time(updated),
        "versions": by_version,
    })))
}

/// The keys directly under `prefix` (folders with a trailing `/`) among the secrets the caller may
/// read; Vault's 404 when there are none.
async fn list(state: &AppState, r: &VaultRequest, prefix: &str) -> Result<Response, VaultError> {
    let (_, claims) = caller(state, r).await?;
    if !secret_store::scopes_allow_any(&claims.scope, Access::Read) {
        return Err(VaultError::forbidden("permission denied".into()));
    }
    if !prefix.is_empty() {
        secret_store::validate_name(prefix).map_err(|e| VaultError::bad_request(e.to_string()))?;
    }
    let mut keys: Vec<String> = Vec::new();
    for s in secrets::list(state.store()).await? {
        if !secret_store::scopes_allow(&claims.scope, Access::Read, &s.name) {
            continue;
        }
        let below = if prefix.is_empty() {
            Some(s.name.as_str())
        } else {
            s.name
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('/'))
        };
        let Some(below) = below else { continue };
        let key = match below.split_once('/') {
            Some((folder, _)) => format!("{folder}/"),
            None => below.to_owned(),
        };
        if keys.last() != Some(&key) && !keys.contains(&key) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(VaultError::not_found());
    }
    keys.sort();
    Ok(data_response(json!({"keys": keys})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_value_and_an_object_map_onto_each_other() {
        assert_eq!(
            Value::Object(to_kv(b"hunter2")),
            json!({"value": "hunter2"})
        );
        assert_eq!(from_kv(&to_kv(b"hunter2")).unwrap(), b"hunter2");
        let obj = json!({"username": "u", "password": "p"});
        let stored = from_kv(obj.as_object().unwrap()).unwrap();
        assert_eq!(stored, br#"{"password":"p","username":"u"}"#);
        assert_eq!(Value::Object(to_kv(&stored)), obj);
        // A single value that is itself a JSON object is kept as an object under `value`.
        let nested = json!({"value": "{\"a\":\"b\"}"});
        let stored = from_kv(nested.as_object().unwrap()).unwrap();
        assert_eq!(Value::Object(to_kv(&stored)), nested);
        assert_eq!(
            Value::Object(to_kv(b"\xff\x00")),
            json!({"value_base64": "/wA="})
        );
        assert!(from_kv(json!({"n": 1}).as_object().unwrap()).is_err());
        // A JSON object with a non-string value written natively reads as one value.
        assert_eq!(
            Value::Object(to_kv(br#"{"n":1}"#)),
            json!({"value": "{\"n\":1}"})
        );
    }
}
