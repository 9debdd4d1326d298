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

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn cert_text(dir: &Path, file: &str) -> String {
    let (ok, text) = openssl(
        &[
            "x509",
            "-in",
            file,
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage,keyUsage,basicConstraints",
        ],
        dir,
    );
    assert!(ok, "{text}");
    text
}

#[test]
fn hvac_issues_and_signs_through_the_pki_mount_and_openssl_verifies_what_the_native_api_would_give()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    let server = Server::start(&["--data-dir", "d"], d);
    let (id, secret) = client(
        d,
        "issuer",
        &["pki:issue", "pki:read", "pki:revoke"],
        &["--cert-name", "*.svc.local", "--cert-name", "10.0.0.0/8"],
    );
    let (ok_key, text) = openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "req.key",
            "-subj",
            "/CN=signed.svc.local",
            "-out",
            "req.csr",
        ],
        d,
    );
    assert!(ok_key, "{text}");
    let summary = hvac(&[
        "pki",
        &server.url,
        &id,
        &secret,
        d.to_str().expect("utf-8 path"),
    ]);

    // The CA the Vault paths serve is the native one: ca/pem is the issuing CA, ca_chain ends at the
    // root the native API names.
    let native_ca = reqwest::blocking_client()
        .get(format!("{}/v1/pki/ca", server.url))
        .send()
        .expect("native ca")
        .json();
    std::fs::write(
        d.join("root.pem"),
        native_ca["root_pem"].as_str().expect("root"),
    )
    .expect("root");
    let ca_pem = std::fs::read_to_string(d.join("ca.pem")).expect("ca.pem");
    assert_eq!(
        ca_pem.trim(),
        native_ca["issuing_ca_pem"]
            .as_str()
            .expect("issuing")
            .trim()
    );
    let chain = std::fs::read_to_string(d.join("ca_chain.pem")).expect("ca_chain");
    assert!(
        chain
            .trim()
            .ends_with(native_ca["root_pem"].as_str().expect("root").trim())
    );

    // Both certificates verify with openssl for TLS servers, against the root alone with the chain
    // hvac was given as untrusted intermediates.
    for leaf in ["issued.pem", "signed.pem"] {
        let (ok_v, text) = openssl(
            &[
                "verify",
                "-purpose",
                "sslserver",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "issued-chain.pem",
                leaf,
            ],
            d,
        );
        assert!(ok_v, "{leaf}: {text}");
    }
    // The key hvac was given is the certificate's.
    let (_, cert_pub) = openssl(&["x509", "-in", "issued.pem", "-noout", "-pubkey"], d);
    let (_, key_pub) = openssl(&["pkey", "-in", "issued.key", "-pubout"], d);
    assert_eq!(cert_pub, key_pub);
    let (_, signed_pub) = openssl(&["x509", "-in", "signed.pem", "-noout", "-pubkey"], d);
    let (_, csr_pub) = openssl(&["pkey", "-in", "req.key", "-pubout"], d);
    assert_eq!(signed_pub, csr_pub);

    // The native API, asked for the same names, gives a certificate of the same shape.
    let native = token(&server.url, &id, &secret);
    let set = reqwest::blocking_client()
        .post(format!("{}/v1/pki/issue/server", server.url))
        .bearer(&native)
        .json(
            &json!({"common_name": "api.svc.local", "dns_names": ["api.svc.local", "www.svc.local"],
                      "ip_addresses": ["10.0.0.7"], "ttl_secs": 7200}),
        )
        .send()
        .expect("native issue")
        .json();
    std::fs::write(
        d.join("native.pem"),
        set["cert_pem"].as_str().expect("cert"),
    )
    .expect("native");
    assert_eq!(cert_text(d, "issued.pem"), cert_text(d, "native.pem"));
    let (_, text) = openssl(
        &[
            "x509",
            "-in",
            "issued.pem",
            "-noout",
            "-subject",
            "-enddate",
        ],
        d,
    );
    assert!(
        text.contains("CN=api.svc.local") || text.contains("CN = api.svc.local"),
        "{text}"
    );
    let expiration = summary["expiration"].as_i64().expect("expiration");
    assert!((expiration - set["not_after"].as_i64().expect("not_after")).abs() < 30);

    // The signed certificate was revoked through the Vault path: the CRL from crl/pem says so.
    let (ok_v, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issued-chain.pem",
            "-CRLfile",
            "crl.pem",
            "signed.pem",
        ],
        d,
    );
    assert!(!ok_v && text.contains("revoked"), "{text}");
    let (ok_v, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issued-chain.pem",
            "-CRLfile",
            "crl.pem",
            "issued.pem",
        ],
        d,
    );
    assert!(ok_v, "{text}");
    let listed = reqwest::blocking_client()
        .get(format!("{}/v1/pki/certs", server.url))
        .bearer(&native)
        .send()
        .expect("list")
        .json();
    let signed_hex = summary["signed_serial"]
        .as_str()
        .expect("serial")
        .replace(':', "");
    let row = listed["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .find(|c| c["serial"] == signed_hex.as_str())
        .unwrap_or_else(|| panic!("{signed_hex} in {listed}"))
        .clone();
    assert!(row["revoked_at"].is_i64(), "{row}");
}

#[test]
fn the_pki_paths_shared_with_the_native_api_answer_each_kind_of_client_in_its_own_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    let server = Server::start(&["--data-dir", "d"], d);
    let (id, secret) = client(d, "both", &["pki:issue"], &["--cert-name", "*.svc.local"]);
    let url = format!("{}/v1/pki/issue/server", server.url);
    let native = token(&server.url, &id, &secret);
    let vt = approle_login(&server.url, &id, &secret);

    // A native client (Bearer, no Vault header): the native shape.
    let (status, body) = vault_with(
        "POST",
        &url,
        &[("Authorization", &format!("Bearer {native}"))],
        Some(&json!({"dns_names": ["a.svc.local"]})),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["cert_pem"].is_string() && body.get("data").is_none(),
        "{body}"
    );
    // A Vault client (X-Vault-Token): Vault's shape, Vault's field names.
    let (status, body) = vault(
        "POST",
        &url,
        Some(&vt),
        Some(&json!({"common_name": "a.svc.local"})),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]["certificate"].is_string() && body.get("cert_pem").is_none(),
        "{body}"
    );
    // Errors too: a native field sent to the Vault shape is Vault's 400, a Vault field to the native
    // one the native error.
    let (status, body) = vault(
        "POST",
        &url,
        Some(&vt),
        Some(&json!({"dns_names": ["a.svc.local"]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .expect("errors")
            .contains("dns_names"),
        "{body}"
    );
    let (status, body) = vault_with(
        "POST",
        &url,
        &[("Authorization", &format!("Bearer {native}"))],
        Some(&json!({"common_name": "a.svc.local", "alt_names": "a.svc.local"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    // A native access token is not a Vault token, nor the other way round.
    let (status, body) = vault(
        "POST",
        &url,
        Some(&native),
        Some(&json!({"common_name": "a.svc.local"})),
    );
    assert_eq!(
        (status, body.clone()),
        (403, json!({"errors": ["permission denied"]})),
        "{body}"
    );
    let (status, body) = vault_with(
        "POST",
        &url,
        &[("Authorization", &format!("Bearer {vt}"))],
        Some(&json!({"dns_names": ["a.svc.local"]})),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    // GET /v1/pki/ca stays native (JSON); the Vault CA paths answer PEM.
    let (status, body) = vault_with("GET", &format!("{}/v1/pki/ca", server.url), &[], None);
    assert_eq!(status, 200);
    assert!(body["root_pem"].is_string(), "{body}");
    let (status, body) = vault_with("GET", &format!("{}/v1/pki/ca/pem", server.url), &[], None);
    assert_eq!(status, 200);
    assert!(
        body.as_str()
            .expect("PEM text")
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{body}"
    );
    // A path outside the subset, in Vault's shape.
    let (status, body) = vault(
        "POST",
        &format!("{}/v1/pki/root/generate/internal", server.url),
        Some(&vt),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .expect("errors")
            .contains("no handler for route"),
        "{body}"
    );
}

#[test]
fn a_vault_token_made_at_one_replica_works_renews_and_is_revoked_at_another() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let Some(db) = rt.block_on(castellan_store::testing::fresh_postgres_database(
        "vault_replicas",
    )) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mk = master_key_file(d, "master.key");
    let common = [
        "--database-url",
        db.as_str(),
        "--master-key-file",
        mk.to_str().expect("path"),
    ];
    let mut init = vec!["init", "--admin-credential-out", "admin.json"];
    init.extend(common);
    ok(&init, d);
    let mut create = vec![
        "client",
        "create",
        "svc",
        "--scope",
        "secrets:read",
        "--scope",
        "secrets:write",
        "--json",
    ];
    create.extend(common);
    let (id, secret) = credential(&ok(&create, d));
    let mut args = vec!["--public-url", "http://castellan.test"];
    args.extend(common);
    let (a, b) = (Server::start(&args, d), Server::start(&args, d));

    let vt = approle_login(&a.url, &id, &secret);
    let (status, w) = vault(
        "POST",
        &format!("{}/v1/secret/data/shared/one", a.url),
        Some(&vt),
        Some(&json!({"data": {"k": "v"}})),
    );
    assert_eq!(status, 200, "{w}");
    // The token made at A reads at B, renews at B, and A sees the renewal.
    let (status, s) = vault(
        "GET",
        &format!("{}/v1/secret/data/shared/one", b.url),
        Some(&vt),
        None,
    );
    assert_eq!((status, s["data"]["data"]["k"].clone()), (200, json!("v")));
    let (status, r) = vault(
        "POST",
        &format!("{}/v1/auth/token/renew-self", b.url),
        Some(&vt),
        None,
    );
    assert_eq!(status, 200, "{r}");
    // Revoked at B: at B at once, at A within the 2 s a replica trusts what it read.
    let (status, _) = vault(
        "POST",
        &format!("{}/v1/auth/token/revoke-self", b.url),
        Some(&vt),
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = vault(
        "GET",
        &format!("{}/v1/auth/token/lookup-self", b.url),
        Some(&vt),
        None,
    );
    assert_eq!(status, 403);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, body) = vault(
        "GET",
        &format!("{}/v1/secret/data/shared/one", a.url),
        Some(&vt),
        None,
    );
    assert_eq!(
        (status, body),
        (403, json!({"errors": ["permission denied"]}))
    );
}
