//! `sys/health`, `sys/seal-status`, `sys/mounts` and `sys/internal/ui/mounts/{path}`, as far as
//! clients probe them: Castellan is one initialized, unsealed, active node with one KV version 2 mount
//! and one PKI mount.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{VaultError, VaultRequest, caller, data_response};
use crate::state::AppState;

pub(super) async fn route(
    state: &AppState,
    r: &VaultRequest,
    rest: &[&str],
) -> Result<Response, VaultError> {
    match rest {
        ["health"] => match r.method {
            Method::GET | Method::HEAD => Ok(health(state, r)),
            _ => Err(VaultError::unsupported()),
        },
        ["seal-status"] => match r.method {
            Method::GET => Ok(axum::Json(seal_status(state)).into_response()),
            _ => Err(VaultError::unsupported()),
        },
        ["mounts"] => match r.method {
            Method::GET => {
                caller(state, r).await?;
                Ok(mounts(state))
            }
            _ => Err(VaultError::unsupported()),
        },
        ["internal", "ui", "mounts", path @ ..] if r.method == Method::GET => {
            let v = state.vault().settings();
            let mount = path.first().copied().unwrap_or_default();
            let (kind, version) = if mount == v.kv_mount {
                ("kv", Some("2"))
            } else if mount == v.pki_mount {
                ("pki", None)
            } else {
                return Err(VaultError::no_route(&format!(
                    "sys/internal/ui/mounts/{}",
                    path.join("/")
                )));
            };
            let mut m = mount_entry(kind, version);
            m["path"] = json!(format!("{mount}/"));
            Ok(data_response(m))
        }
        _ => Err(VaultError::no_route(&format!("sys/{}", rest.join("/")))),
    }
}

fn version() -> String {
    format!("castellan-{}", env!("CARGO_PKG_VERSION"))
}

fn health(state: &AppState, r: &VaultRequest) -> Response {
    let body = json!({
        "initialized": true,
        "sealed": false,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": state.now(),
        "version": version(),
        "cluster_name": "castellan",
        "cluster_id": state.settings().replica_id,
    });
    if r.method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    axum::Json(body).into_response()
}

fn seal_status(state: &AppState) -> Value {
    json!({
        "type": "shamir", "initialized": true, "sealed": false, "t": 1, "n": 1, "progress": 0,
        "nonce": "", "version": version(), "migration": false, "cluster_name": "castellan",
        "cluster_id": state.settings().replica_id, "recovery_seal": false, "storage_type": state.store().kind().as_str(),
    })
}

fn mount_entry(kind: &str, version: Option<&str>) -> Value {
    json!({
        "type": kind,
        "description": format!("Castellan's {kind} over its own store"),
        "accessor": format!("{kind}_castellan"),
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
        "options": version.map(|v| json!({"version": v})),
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
    })
}

/// The mounts, in `data` and (as Vault also answers, for older clients) at the top level.
fn mounts(state: &AppState) -> Response {
    let v = state.vault().settings();
    let mut data = serde_json::Map::new();
    data.insert(format!("{}/", v.kv_mount), mount_entry("kv", Some("2")));
    data.insert(format!("{}/", v.pki_mount), mount_entry("pki", None));
    data.insert("sys/".into(), mount_entry("system", None));
    let mut body = serde_json::Map::new();
    for (k, m) in &data {
        body.insert(k.clone(), m.clone());
    }
    body.insert(
        "request_id".into(),
        json!(castellan_core::secret::random_id("", 16).unwrap_or_default()),
    );
    body.insert("lease_id".into(), json!(""));
    body.insert("renewable".into(), json!(false));
    body.insert("lease_duration".into(), json!(0));
    body.insert("data".into(), Value::Object(data));
    body.insert("wrap_info".into(), Value::Null);
    body.insert("warnings".into(), Value::Null);
    body.insert("auth".into(), Value::Null);
    axum::Json(Value::Object(body)).into_response()
}
