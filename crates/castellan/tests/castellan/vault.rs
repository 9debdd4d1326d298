//! Issue 20: the Vault-shaped API, driven by hvac (the Python Vault client from PyPI) end to end and
//! by the requests External Secrets Operator and cert-manager send (see the comments at each replay),
//! against a running Castellan; results are compared with the native API.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/castellan")
        .join(name)
}

fn client(dir: &Path, name: &str, scopes: &[&str], extra: &[&str]) -> (String, String) {
    let mut args = vec!["client", "create", name, "--data-dir", "d", "--json"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    args.extend(extra);
    credential(&ok(&args, dir))
}

fn hvac(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(script("vault_hvac.py"))
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "hvac: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(text.lines().last().expect("a summary line")).expect("summary JSON")
}

/// A request in Vault's shape: `X-Vault-Token` when given, a JSON body when given; the status and
/// the body (JSON, or the text when it is not JSON).
fn vault(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    vault_with(
        method,
        url,
        &[("X-Vault-Token", token.unwrap_or_default())],
        body,
    )
}

fn vault_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let c = ::reqwest::Client::new();
        let mut req = c.request(
            ::reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            url,
        );
        for (k, v) in headers {
            if !v.is_empty() {
                req = req.header(*k, *v);
            }
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

fn approle_login(url: &str, id: &str, secret: &str) -> String {
    let (status, body) = vault(
        "POST",
        &format!("{url}/v1/auth/approle/login"),
        None,
        Some(&json!({"role_id": id, "secret_id": secret})),
    );
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_owned()
}

fn native_get(url: &str, token: &str, path: &str) -> (u16, Value) {
    let r = reqwest::blocking_client()
        .get(format!("{url}{path}"))
        .bearer(token)
        .send()
        .expect("native request");
    (
        r.status().as_u16(),
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn hvac_logs_in_with_approle_and_uses_kv_v2_over_castellan_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    let server = Server::start(&["--data-dir", "d"], d);
    let (id, secret) = client(d, "hvac", &["secrets:read", "secrets:write"], &[]);
    let summary = hvac(&["kv", &server.url, &id, &secret]);
    assert_eq!(summary["kv_version"], 2);

    // What hvac wrote through KV is the same secret on the native API: an object as its JSON text,
    // a lone `value` as the bytes alone.
    let native = token(&server.url, &id, &secret);
    let (status, s) = native_get(&server.url, &native, "/v1/secrets/app/db");
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["version"], 2);
    let value: Value =
        serde_json::from_str(s["value"].as_str().expect("utf-8 value")).expect("JSON text");
    assert_eq!(value, json!({"username": "svc", "password": "p2"}));
    let (_, s) = native_get(&server.url, &native, "/v1/secrets/app/cache/redis");
    assert_eq!(s["value"], "single");
    // Deleted through KV, gone natively.
    let (status, _) = native_get(&server.url, &native, "/v1/secrets/gone/soon");
    assert_eq!(status, 404);
}
