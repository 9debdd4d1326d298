//! PKI over Castellan's profiles as roles: `{mount}/issue/{role}`, `{mount}/sign/{role}`,
//! `{mount}/revoke`, `{mount}/cert/{serial}`, `{mount}/ca/pem`, `{mount}/ca`, `{mount}/ca_chain`,
//! `{mount}/crl/pem`, `{mount}/crl`, `LIST {mount}/roles`.
//!
//! Requests go through the same use case as the native `/v1/pki` (scopes `pki:issue[:PROFILE]`, the
//! client's certificate name patterns, verification of every set before it is returned); only the
//! field names and shapes are Vault's. A `ttl` beyond the profile's maximum is cut to it, as Vault
//! cuts one to its role's `max_ttl`.

use std::net::IpAddr;

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use castellan_core::pki::{IssueRequest, IssuedSet, KeyType};
use serde_json::{Value, json};

use super::{VaultError, VaultRequest, caller, data_response};
use crate::cert_names;
use crate::pki;
use crate::state::AppState;
use crate::vault_tokens::VaultSettings;

/// The PKI mount's paths Vault answers without a token (the CA and the CRL) that the native API does
/// not have (`crl` and `ca` are native paths too: without a Vault header they stay native).
pub(super) fn is_public_path(v: &VaultSettings, rest: &str) -> bool {
    let Some(p) = rest
        .strip_prefix(v.pki_mount.as_str())
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    matches!(
        p,
        "ca/pem" | "ca_chain" | "cert/ca" | "cert/ca_chain" | "crl/pem" | "cert/crl"
    )
}

pub(super) async fn route(
    state: &AppState,
    r: &VaultRequest,
    rest: &[&str],
) -> Result<Response, VaultError> {
    let get = r.method == Method::GET;
    match rest {
        ["issue", role] if r.is_write() => issue(state, r, role, false).await,
        ["sign", role] if r.is_write() => issue(state, r, role, true).await,
        ["revoke"] if r.is_write() => revoke(state, r).await,
        ["ca", "pem"] if get => Ok(pem_text(state.ca().issuer.ca_cert_pem().to_owned())),
        ["ca"] if get => Ok(der(
            first_der(state.ca().issuer.ca_cert_pem())?,
            "application/pkix-cert",
        )),
        ["ca_chain"] if get => Ok(pem_text(ca_chain(state).join("\n"))),
        ["cert", "ca"] if get => Ok(data_response(
            json!({"certificate": state.ca().issuer.ca_cert_pem()}),
        )),
        ["cert", "ca_chain"] if get => Ok(data_response(
            json!({"certificate": ca_chain(state).join("\n")}),
        )),
        ["crl", "pem"] if get => Ok(pem_text(crl(state).await?.pem)),
        ["crl"] if get => Ok(der(crl(state).await?.der, "application/pkix-crl")),
        ["cert", "crl"] if get => Ok(data_response(json!({"certificate": crl(state).await?.pem}))),
        ["cert", serial] if get => cert(state, r, serial).await,
        ["roles"] if r.method.as_str() == "LIST" => {
            caller(state, r).await?;
            let mut keys: Vec<&str> = state
                .settings()
                .profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            keys.sort_unstable();
            Ok(data_response(json!({"keys": keys})))
        }
        [
            "issue" | "sign" | "revoke" | "ca" | "ca_chain" | "crl" | "cert" | "roles",
            ..,
        ] => Err(VaultError::unsupported()),
        _ => Err(VaultError::no_route(&format!(
            "{}/{}",
            state.vault().settings().pki_mount,
            rest.join("/")
        ))),
    }
}

fn pem_text(text: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        text,
    )
        .into_response()
}

fn der(bytes: Vec<u8>, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

fn first_der(pem_text: &str) -> Result<Vec<u8>, VaultError> {
    pem::parse(pem_text)
        .map(|p| p.contents().to_vec())
        .map_err(|_| VaultError::internal())
}

/// The issuing CA, then the CAs above it up to the root (Vault's `ca_chain`).
fn ca_chain(state: &AppState) -> Vec<String> {
    let ca = state.ca();
    // The bundle is root first, then the intermediates: Vault lists the issuer first.
    let mut chain: Vec<String> = pem::parse_many(ca.issuer.ca_bundle_pem())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            pem::encode_config(
                p,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
            .trim_end()
            .to_owned()
        })
        .collect();
    chain.reverse();
    chain
}

async fn crl(state: &AppState) -> Result<castellan_store::CrlRow, VaultError> {
    Ok(pki::current_crl(
        state.store(),
        &state.ca(),
        state.now(),
        state.settings().crl_validity_secs,
        0,
    )
    .await?)
}

/// Vault's serial form: lowercase hex pairs joined by `:`.
fn vault_serial(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn serial_from_vault(s: &str) -> Result<String, VaultError> {
    Ok(pki::normalize_serial(&s.replace('-', ":"))?)
}

/// A field Vault's clients send as a string, a number or a boolean; its text.
fn text(body: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, VaultError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(VaultError::bad_request(format!(
            "`{name}` must be a string"
        ))),
    }
}

fn list(body: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<String>, VaultError> {
    match body.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| s.trim().to_owned())
                    .ok_or_else(|| VaultError::bad_request(format!("`{name}` must list strings")))
            })
            .filter(|s| !matches!(s, Ok(s) if s.is_empty()))
            .collect(),
        _ => Ok(text(body, name)?
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()),
    }
}

/// A Vault TTL: seconds, or a duration such as `90m`, `2h` or Go's `2160h0m0s`.
pub(crate) fn parse_ttl(s: &str) -> Result<u64, VaultError> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|_| VaultError::bad_request(format!("ttl {s:?} is not a duration")))
}

/// The fields of an issue or sign request Castellan takes (others are refused, naming the field).
const FIELDS: [&str; 11] = [
    "common_name",
    "alt_names",
    "ip_sans",
    "uri_sans",
    "ttl",
    "csr",
    "format",
    "private_key_format",
    "exclude_cn_from_sans",
    "key_type",
    "key_bits",
];

/// Castellan's request from Vault's fields (the CSR, for `sign`, apart).
fn issue_request(
    body: &serde_json::Map<String, Value>,
    max_ttl: u64,
) -> Result<IssueRequest, VaultError> {
    if let Some(k) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(VaultError::bad_request(format!(
            "`{k}` is not a field Castellan's PKI takes (see docs/vault-compat.md)"
        )));
    }
    match text(body, "format")?.as_deref() {
        None | Some("") | Some("pem") => {}
        Some(f) => {
            return Err(VaultError::bad_request(format!(
                "format {f:?}: Castellan answers in pem only"
            )));
        }
    }
    match text(body, "private_key_format")?.as_deref() {
        None | Some("") | Some("pkcs8") => {}
        Some(f) => {
            return Err(VaultError::bad_request(format!(
                "private_key_format {f:?}: Castellan's keys are PKCS#8 (pkcs8)"
            )));
        }
    }
    let common_name = text(body, "common_name")?.filter(|s| !s.is_empty());
    let exclude_cn = text(body, "exclude_cn_from_sans")?.as_deref() == Some("true");
    let mut dns_names = list(body, "alt_names")?;
    if let Some(cn) = &common_name
        && !exclude_cn
        && cn.parse::<IpAddr>().is_err()
        && !dns_names.contains(cn)
    {
        dns_names.insert(0, cn.clone());
    }
    let ip_addresses = list(body, "ip_sans")?
        .iter()
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| {
                VaultError::bad_request(format!("ip_sans: {s:?} is not an IP address"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ttl_secs = text(body, "ttl")?
        .filter(|s| !s.is_empty())
        .map(|s| parse_ttl(&s))
        .transpose()?
        .map(|t| t.min(max_ttl));
    let key_type = vault_key_type(
        text(body, "key_type")?.as_deref(),
        text(body, "key_bits")?.as_deref(),
    )?;
    Ok(IssueRequest {
        common_name,
        dns_names,
        ip_addresses,
        uris: list(body, "uri_sans")?,
        ttl_secs,
        key_type,
    })
}

/// Vault's `key_type` (`rsa`, `ec`, `ed25519`, `any`) and `key_bits` as a key type (the profile's
/// default when neither says).
fn vault_key_type(kind: Option<&str>, bits: Option<&str>) -> Result<Option<KeyType>, VaultError> {
    let bits = bits.filter(|b| !b.is_empty() && *b != "0");
    let t = match (kind.unwrap_or(""), bits) {
        ("" | "any", None) => return Ok(None),
        ("ec", None | Some("256")) => KeyType::P256,
        ("ec", Some("384")) => KeyType::P384,
        ("ed25519", None) => KeyType::Ed25519,
        ("rsa", None | Some("2048")) => KeyType::Rsa2048,
        ("rsa", Some("3072")) => KeyType::Rsa3072,
        ("rsa", Some("4096")) => KeyType::Rsa4096,
        (k, b) => {
            return Err(VaultError::bad_request(format!(
                "key_type {k:?} with key_bits {:?} is not a key type Castellan issues",
                b.unwrap_or("")
            )));
        }
    };
    Ok(Some(t))
}

fn key_kind(k: KeyType) -> &'static str {
    match k {
        KeyType::Ed25519 => "ed25519",
        KeyType::P256 | KeyType::P384 => "ec",
        _ => "rsa",
    }
}

/// Vault's answer for an issued set.
fn set_data(state: &AppState, set: &IssuedSet) -> Value {
    let chain = ca_chain(state);
    let mut data = json!({
        "certificate": set.cert_pem.trim_end(),
        "issuing_ca": chain.first().cloned().unwrap_or_default(),
        "ca_chain": chain,
        "serial_number": vault_serial(&set.serial_hex),
        "expiration": set.not_after,
    });
    if let Some(key) = &set.key_pem {
        data["private_key"] = json!(key.trim_end());
        data["private_key_type"] = json!(key_kind(set.key_type));
    }
    data
}

async fn issue(
    state: &AppState,
    r: &VaultRequest,
    role: &str,
    sign: bool,
) -> Result<Response, VaultError> {
    let (_, claims) = caller(state, r).await?;
    let body: serde_json::Map<String, Value> = r.json()?;
    let profile = state.settings().profiles.get(role).map_err(|_| {
        VaultError::new(
            StatusCode::NOT_FOUND,
            format!("unknown role: {}", role.escape_default()),
        )
    })?;
    let req = issue_request(&body, profile.max_ttl_secs)?;
    let csr = if sign {
        Some(
            text(&body, "csr")?
                .ok_or_else(|| VaultError::bad_request("`csr` is missing".into()))?,
        )
    } else {
        if body.contains_key("csr") {
            return Err(VaultError::bad_request(
                "`csr` is for sign/ROLE, not issue/ROLE".into(),
            ));
        }
        None
    };
    let set = cert_names::issue_as(state, &claims, role, csr.as_deref(), &req).await?;
    tracing::info!(serial = %set.serial_hex, profile = role, client_id = %claims.client_id, sign, "issued a certificate (vault pki)");
    Ok(data_response(set_data(state, &set)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    serial_number: String,
}

async fn revoke(state: &AppState, r: &VaultRequest) -> Result<Response, VaultError> {
    let (_, claims) = caller(state, r).await?;
    if !claims
        .scope
        .split(' ')
        .any(|s| s == "pki:revoke" || s == "admin")
    {
        return Err(VaultError::forbidden(
            "permission denied: the token lacks the `pki:revoke` scope".into(),
        ));
    }
    let body: RevokeBody = r.json()?;
    let serial = serial_from_vault(&body.serial_number)?;
    pki::revoke(
        state.store(),
        &state.ca(),
        &serial,
        None,
        state.now(),
        state.settings().crl_validity_secs,
    )
    .await?;
    let at = state
        .store()
        .certificate(&serial)
        .await
        .map_err(crate::error::ServiceError::Store)?
        .and_then(|c| c.revoked_at)
        .unwrap_or_else(|| state.now());
    tracing::info!(serial = %serial, client_id = %claims.client_id, "revoked a certificate (vault pki)");
    Ok(data_response(json!({
        "revocation_time": at,
        "revocation_time_rfc3339": super::vault_time(at),
        "state": "revoked",
    })))
}

/// A certificate by serial: `pki:read`, as the native listing asks.
async fn cert(state: &AppState, r: &VaultRequest, serial: &str) -> Result<Response, VaultError> {
    let (_, claims) = caller(state, r).await?;
    if !claims
        .scope
        .split(' ')
        .any(|s| s == "pki:read" || s == "admin")
    {
        return Err(VaultError::forbidden(
            "permission denied: the token lacks the `pki:read` scope".into(),
        ));
    }
    let serial = serial_from_vault(serial)?;
    let row = state
        .store()
        .certificate(&serial)
        .await
        .map_err(crate::error::ServiceError::Store)?
        .ok_or_else(VaultError::not_found)?;
    Ok(data_response(json!({
        "certificate": row.cert_pem.trim_end(),
        "revocation_time": row.revoked_at.unwrap_or(0),
        "revocation_time_rfc3339": row.revoked_at.map(super::vault_time).unwrap_or_default(),
        "serial_number": vault_serial(&row.serial),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_read_as_vault_clients_write_them() {
        assert_eq!(parse_ttl("3600").unwrap(), 3600);
        assert_eq!(parse_ttl("2h").unwrap(), 7200);
        assert_eq!(parse_ttl("2160h0m0s").unwrap(), 2160 * 3600);
        assert_eq!(parse_ttl("1h30m").unwrap(), 5400);
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn vault_fields_become_castellan_names() {
        let body = json!({"common_name": "a.svc", "alt_names": "b.svc, a.svc", "ip_sans": "10.0.0.1",
                          "uri_sans": "spiffe://x/y", "ttl": "90d", "exclude_cn_from_sans": "false"});
        let req = issue_request(body.as_object().unwrap(), 3600).unwrap();
        assert_eq!(req.dns_names, ["b.svc", "a.svc"]);
        assert_eq!(req.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(req.uris, ["spiffe://x/y"]);
        assert_eq!(req.ttl_secs, Some(3600));
        let body = json!({"common_name": "c.svc", "exclude_cn_from_sans": "true"});
        assert!(
            issue_request(body.as_object().unwrap(), 3600)
                .unwrap()
                .dns_names
                .is_empty()
        );
        let body = json!({"common_name": "c.svc", "other_sans": "x"});
        assert!(issue_request(body.as_object().unwrap(), 3600).is_err());
        assert_eq!(vault_serial("0a1b2c"), "0a:1b:2c");
        assert_eq!(serial_from_vault("0a-1b-2c").unwrap(), "0a1b2c");
    }
}
