//! Issue 20: the exact requests External Secrets Operator's Vault provider and cert-manager's Vault
//! issuer send, and the fields of the answers they read, replayed against a running Castellan; scope
//! confinement through the Vault paths; a secret written through KV delivered by the agent.
//!
//! Sources of the shapes (read with the search tools, November 2026 snapshots):
//! - external-secrets/external-secrets `pkg/provider/vault/auth_kubernetes.go`: Kubernetes login
//!   through hashicorp/vault/api/auth/kubernetes, `POST /v1/auth/{path}/login` `{"jwt", "role"}`, the
//!   token read from `auth.client_token`.
//! - external-secrets/external-secrets `pkg/provider/vault/auth.go` (`checkToken`,
//!   `revokeTokenIfValid`): `GET /v1/auth/token/lookup-self` reading `data.type` (must not be
//!   `batch`), `data.ttl` (a JSON number) and `data.expire_time`; `POST /v1/auth/token/revoke-self`.
//! - external-secrets/external-secrets `pkg/provider/vault/client_get.go` (`readSecret`,
//!   `getSecretValue`, `buildPath`): `GET /v1/{mount}/data/{key}` with `?version=N`, the value read
//!   from `data.data` (an object); `property` picks a key of that object (client-side); `LIST
//!   /v1/{mount}/metadata/{path}` for `find` (client_get_all_secrets.go).
//! - cert-manager/cert-manager `pkg/internal/vault/vault.go` (`Sign`, `requestTokenWithAppRoleRef`,
//!   `requestTokenWithKubernetesAuth`): `POST /v1/auth/approle/login` `{"role_id", "secret_id"}` and
//!   `POST /v1/auth/kubernetes/login` `{"role", "jwt"}` reading `auth.client_token`; `POST
//!   /v1/{issuer path}` (`pki/sign/ROLE`) with string fields `common_name`, `alt_names`, `ip_sans`,
//!   `uri_sans`, `ttl` (a Go duration such as `2160h0m0s`), `csr`, `exclude_cn_from_sans: "true"`,
//!   reading `data.certificate`, `data.issuing_ca`, `data.ca_chain` (certutil.ParsePKIMap); and
//!   `GET /v1/sys/health` (vault api `Sys().Health()`) reading `initialized` and `sealed`.
//!
//! hashicorp/vault/api sends `X-Vault-Token` and `X-Vault-Request: true` on every request.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

const AUDIENCE: &str = "castellan";
const ISSUER: &str = "https://oidc.replay-cluster.example";

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/castellan")
        .join(name)
}

/// The test issuer of issue 19 (k8s_issuer.py): its keys, and projected service-account tokens.
fn issuer_keys(dir: &Path) {
    std::fs::create_dir_all(dir.join("issuer")).expect("issuer dir");
    let out = Command::new("python3")
        .arg(script("k8s_issuer.py"))
        .arg("keys")
        .arg(dir.join("issuer"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(dir.join("issuer/jwks.json"), dir.join("jwks.json")).expect("jwks");
}

fn sa_token(dir: &Path, namespace: &str, sa: &str) -> String {
    let spec =
        json!({"iss": ISSUER, "aud": AUDIENCE, "namespace": namespace, "sa": sa, "exp_in": 600});
    let out = Command::new("python3")
        .arg(script("k8s_issuer.py"))
        .arg("token")
        .arg(dir.join("issuer"))
        .arg(spec.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// One HTTP/1.1 request written byte for byte (no URL normalization on the way), as hashicorp/vault/api
/// sends them: `X-Vault-Token` and `X-Vault-Request: true`. Returns the status and the body as JSON
/// (or as a string when it is not JSON).
fn raw(
    url: &str,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nX-Vault-Request: true\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let (head, rest) = text.split_once("\r\n\r\n").expect("head");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Chunked: the sizes are on their own lines; keep the data lines.
        let mut out = String::new();
        let mut lines = rest.split("\r\n");
        while let Some(size) = lines.next() {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(lines.next().unwrap_or_default());
        }
        out
    } else {
        rest.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn setup(d: &Path) -> Server {
    issuer_keys(d);
    ok(&["init", "--data-dir", "d"], d);
    std::fs::write(
        d.join("castellan.toml"),
        format!(
            r#"
[[trusted_issuer]]
issuer = "{ISSUER}"
jwks_file = "jwks.json"
audience = "{AUDIENCE}"
subject = "system:serviceaccount:payments:*"
client_id = "k8s:{{namespace}}:{{serviceaccount}}"
scopes = ["secrets:read:payments"]
"#
        ),
    )
    .expect("config");
    Server::start(&["--data-dir", "d", "--config", "castellan.toml"], d)
}

fn admin_token(d: &Path, url: &str) -> String {
    let (id, secret) =
        credential(&std::fs::read_to_string(d.join("d/admin-credential.json")).expect("admin"));
    token(url, &id, &secret)
}

fn put_native(url: &str, admin: &str, name: &str, value: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let status = rt.block_on(async {
        ::reqwest::Client::new()
            .put(format!("{url}/v1/secrets/{name}"))
            .bearer_auth(admin)
            .json(&json!({"value": value}))
            .send()
            .await
            .expect("put")
            .status()
            .as_u16()
    });
    assert_eq!(status, 200, "native put {name}");
}

#[test]
fn external_secrets_kubernetes_login_lookup_read_with_property_list_and_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server = setup(d);
    let admin = admin_token(d, &server.url);
    put_native(
        &server.url,
        &admin,
        "payments/db",
        r#"{"password":"pw-1","username":"invoicer"}"#,
    );
    put_native(
        &server.url,
        &admin,
        "payments/db",
        r#"{"password":"pw-2","username":"invoicer"}"#,
    );
    put_native(&server.url, &admin, "payments/api-key", "k-123");
    put_native(
        &server.url,
        &admin,
        "billing/db",
        r#"{"password":"not-yours"}"#,
    );

    // auth_kubernetes.go: the pod's service-account token and the role.
    let jwt = sa_token(d, "payments", "invoicer");
    let (status, login) = raw(
        &server.url,
        "PUT",
        "/v1/auth/kubernetes/login",
        None,
        Some(&json!({"jwt": jwt, "role": "k8s:payments:invoicer"})),
    );
    assert_eq!(status, 200, "{login}");
    let vt = login["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_owned();
    assert_eq!(login["auth"]["policies"], json!(["secrets:read:payments"]));

    // auth.go checkToken: type not batch, ttl a number ≥ 60, expire_time present.
    let (status, me) = raw(
        &server.url,
        "GET",
        "/v1/auth/token/lookup-self",
        Some(&vt),
        None,
    );
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["type"], "service");
    assert!(
        me["data"]["ttl"].as_i64().expect("ttl is a number") >= 60,
        "{me}"
    );
    assert!(me["data"]["expire_time"].is_string(), "{me}");

    // client_get.go readSecret: data.data, latest and ?version=1; property `password` picks a key.
    let (status, s) = raw(
        &server.url,
        "GET",
        "/v1/secret/data/payments/db",
        Some(&vt),
        None,
    );
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s["data"]["data"]["password"], "pw-2",
        "property selection of `password`"
    );
    assert_eq!(s["data"]["metadata"]["version"], 2);
    let (_, s) = raw(
        &server.url,
        "GET",
        "/v1/secret/data/payments/db?version=1",
        Some(&vt),
        None,
    );
    assert_eq!(s["data"]["data"]["password"], "pw-1");
    // A single value is the object {"value": …}: property `value`.
    let (_, s) = raw(
        &server.url,
        "GET",
        "/v1/secret/data/payments/api-key",
        Some(&vt),
        None,
    );
    assert_eq!(s["data"]["data"], json!({"value": "k-123"}));
    // A secret outside the mapped scopes: 403, and not a 404 that would tell it exists or not.
    let (status, s) = raw(
        &server.url,
        "GET",
        "/v1/secret/data/billing/db",
        Some(&vt),
        None,
    );
    assert_eq!((status, s), (403, json!({"errors": ["permission denied"]})));
    let (status, s) = raw(
        &server.url,
        "GET",
        "/v1/secret/data/billing/none",
        Some(&vt),
        None,
    );
    assert_eq!(status, 403, "{s}");
    // find (client_get_all_secrets.go): LIST metadata, only what the token reads.
    let (status, keys) = raw(&server.url, "LIST", "/v1/secret/metadata/", Some(&vt), None);
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["data"]["keys"], json!(["payments/"]));
    let (_, keys) = raw(
        &server.url,
        "GET",
        "/v1/secret/metadata/payments?list=true",
        Some(&vt),
        None,
    );
    assert_eq!(keys["data"]["keys"], json!(["api-key", "db"]));

    // A role that is not the client the token maps to is refused, as is another namespace's token.
    let (status, _) = raw(
        &server.url,
        "POST",
        "/v1/auth/kubernetes/login",
        None,
        Some(&json!({"jwt": jwt, "role": "k8s:billing:reader"})),
    );
    assert_eq!(status, 403);
    let other = sa_token(d, "billing", "reader");
    let (status, body) = raw(
        &server.url,
        "POST",
        "/v1/auth/kubernetes/login",
        None,
        Some(&json!({"jwt": other, "role": "k8s:billing:reader"})),
    );
    assert_eq!(
        (status, body),
        (403, json!({"errors": ["permission denied"]}))
    );
    // auth/jwt/login takes the same trusted issuers.
    let (status, body) = raw(
        &server.url,
        "POST",
        "/v1/auth/jwt/login",
        None,
        Some(&json!({"jwt": jwt})),
    );
    assert_eq!(status, 200, "{body}");

    // revokeTokenIfValid: revoke-self, after which the token works nowhere.
    let (status, _) = raw(
        &server.url,
        "PUT",
        "/v1/auth/token/revoke-self",
        Some(&vt),
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = raw(
        &server.url,
        "GET",
        "/v1/auth/token/lookup-self",
        Some(&vt),
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = raw(
        &server.url,
        "GET",
        "/v1/secret/data/payments/db",
        Some(&vt),
        None,
    );
    assert_eq!(status, 403);
}

#[test]
fn cert_manager_health_approle_login_and_sign_as_its_vault_issuer_sends_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server = setup(d);
    let cred = ok(
        &[
            "client",
            "create",
            "cert-manager",
            "--scope",
            "pki:issue",
            "--cert-name",
            "*.payments.svc",
            "--data-dir",
            "d",
            "--json",
        ],
        d,
    );
    let (role_id, secret_id) = credential(&cred);
    // Sys().Health(): initialized and not sealed.
    let (status, health) = raw(&server.url, "GET", "/v1/sys/health", None, None);
    assert_eq!(status, 200);
    assert_eq!(
        (health["initialized"].clone(), health["sealed"].clone()),
        (json!(true), json!(false))
    );
    // requestTokenWithAppRoleRef.
    let (status, login) = raw(
        &server.url,
        "POST",
        "/v1/auth/approle/login",
        None,
        Some(&json!({"role_id": role_id, "secret_id": secret_id})),
    );
    assert_eq!(status, 200, "{login}");
    let vt = login["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_owned();
    // requestTokenWithKubernetesAuth's request is answered too (its token reads, it does not issue:
    // a mapped client has no certificate name patterns).
    let jwt = sa_token(d, "payments", "invoicer");
    let (status, k8s) = raw(
        &server.url,
        "POST",
        "/v1/auth/kubernetes/login",
        None,
        Some(&json!({"role": "k8s:payments:invoicer", "jwt": jwt})),
    );
    assert_eq!(status, 200, "{k8s}");

    // Sign: a CSR as cert-manager makes it, every field a string, ttl a Go duration.
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-subj",
            "/CN=web.payments.svc",
            "-addext",
            "subjectAltName=DNS:web.payments.svc,DNS:api.payments.svc",
            "-out",
            "tls.csr",
        ])
        .current_dir(d)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csr = std::fs::read_to_string(d.join("tls.csr")).expect("csr");
    let params = json!({
        "common_name": "web.payments.svc",
        "alt_names": "web.payments.svc,api.payments.svc",
        "ip_sans": "",
        "uri_sans": "",
        "ttl": "2160h0m0s",
        "csr": csr,
        "exclude_cn_from_sans": "true",
    });
    let (status, signed) = raw(
        &server.url,
        "POST",
        "/v1/pki/sign/server",
        Some(&vt),
        Some(&params),
    );
    assert_eq!(status, 200, "{signed}");
    let data = &signed["data"];
    let chain: Vec<&str> = data["ca_chain"]
        .as_array()
        .expect("ca_chain")
        .iter()
        .map(|c| c.as_str().expect("pem"))
        .collect();
    assert_eq!(data["issuing_ca"].as_str(), chain.first().copied());
    std::fs::write(
        d.join("tls.crt"),
        data["certificate"].as_str().expect("certificate"),
    )
    .expect("crt");
    // cert-manager's ca.crt: the chain joined; the root is its last certificate.
    std::fs::write(d.join("ca.crt"), chain.last().expect("root")).expect("ca");
    std::fs::write(
        d.join("intermediate.pem"),
        chain[..chain.len() - 1].join("\n"),
    )
    .expect("int");
    let out = Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "intermediate.pem",
            "tls.crt",
        ])
        .current_dir(d)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args([
            "x509",
            "-in",
            "tls.crt",
            "-noout",
            "-ext",
            "subjectAltName",
            "-enddate",
        ])
        .current_dir(d)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DNS:web.payments.svc") && text.contains("DNS:api.payments.svc"),
        "{text}"
    );
    // 2160h is beyond the server profile's 90-day maximum? It is exactly 90 days: kept.
    let not_after = &signed["data"]["expiration"];
    assert!(not_after.as_i64().expect("expiration") > 0);
    // A name outside the client's patterns is refused in Vault's shape.
    let mut bad = params.clone();
    bad["alt_names"] = json!("web.payments.svc,evil.example.org");
    let (status, body) = raw(
        &server.url,
        "POST",
        "/v1/pki/sign/server",
        Some(&vt),
        Some(&bad),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0].is_string(), "{body}");
    // The Kubernetes-login token cannot issue.
    let kt = k8s["auth"]["client_token"].as_str().expect("token");
    let (status, body) = raw(
        &server.url,
        "POST",
        "/v1/pki/sign/server",
        Some(kt),
        Some(&params),
    );
    assert_eq!(status, 403, "{body}");
}

#[test]
fn scopes_confine_a_token_on_the_vault_paths_against_prefix_tricks_and_encoded_slashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server = setup(d);
    let admin = admin_token(d, &server.url);
    put_native(&server.url, &admin, "mqtt/broker", "b-1");
    put_native(&server.url, &admin, "mqtt2/x", "no");
    put_native(&server.url, &admin, "other", "no");
    let cred = ok(
        &[
            "client",
            "create",
            "mqtt-only",
            "--scope",
            "secrets:read:mqtt",
            "--scope",
            "secrets:write:mqtt",
            "--data-dir",
            "d",
            "--json",
        ],
        d,
    );
    let (id, secret) = credential(&cred);
    let (_, login) = raw(
        &server.url,
        "POST",
        "/v1/auth/approle/login",
        None,
        Some(&json!({"role_id": id, "secret_id": secret})),
    );
    let vt = login["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let get = |target: &str| raw(&server.url, "GET", target, Some(&vt), None);

    assert_eq!(
        get("/v1/secret/data/mqtt/broker").1["data"]["data"]["value"],
        "b-1"
    );
    // An encoded slash is a slash, as Vault reads it: the same secret, the same decision.
    assert_eq!(
        get("/v1/secret/data/mqtt%2Fbroker").1["data"]["data"]["value"],
        "b-1"
    );
    for target in [
        "/v1/secret/data/mqtt2/x",
        "/v1/secret/data/other",
        "/v1/secret/data/mqtt/../other",
        "/v1/secret/data/mqtt/%2E%2E/other",
        "/v1/secret/data/mqtt%2F..%2Fother",
        "/v1/secret/data/mqtt%2f%2e%2e%2fother",
        "/v1/secret/data/mqtt//../other",
        "/v1/secret/data/./other",
        "/v1/secret/data/%6Dqtt2/x",
        "/v1/secret/metadata/other",
        "/v1/secret/data/mqtt%00/x",
    ] {
        let (status, body) = get(target);
        assert!(status == 403 || status == 400, "{target}: {status} {body}");
        assert!(body["errors"].is_array(), "{target}: {body}");
        assert!(!body.to_string().contains("\"no\""), "{target}: {body}");
    }
    // Writes are confined the same way.
    for target in [
        "/v1/secret/data/other",
        "/v1/secret/data/mqtt%2F..%2Fother",
        "/v1/secret/data/mqtt2/y",
    ] {
        let (status, body) = raw(
            &server.url,
            "POST",
            target,
            Some(&vt),
            Some(&json!({"data": {"value": "x"}})),
        );
        assert!(status == 403 || status == 400, "{target}: {status} {body}");
    }
    let (status, _) = raw(
        &server.url,
        "DELETE",
        "/v1/secret/metadata/other",
        Some(&vt),
        None,
    );
    assert_eq!(status, 403);
    // Listing shows only what the token reads: not mqtt2/ nor other.
    let (_, keys) = raw(&server.url, "LIST", "/v1/secret/metadata/", Some(&vt), None);
    assert_eq!(keys["data"]["keys"], json!(["mqtt/"]));
    let (status, _) = raw(
        &server.url,
        "LIST",
        "/v1/secret/metadata/mqt",
        Some(&vt),
        None,
    );
    assert_eq!(status, 404);
    // The native API decides alike for the same client.
    let native = token(&server.url, &id, &secret);
    let r = reqwest::blocking_client()
        .get(format!("{}/v1/secrets/mqtt2/x", server.url))
        .bearer(&native)
        .send()
        .expect("native");
    assert_eq!(r.status, 403);
    let (status, _) = get("/v1/secret/data/mqtt2/x");
    assert_eq!(status, 403);
}

#[test]
fn a_secret_written_through_kv_is_read_natively_and_delivered_by_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server = setup(d);
    let cred = ok(
        &[
            "client",
            "create",
            "writer",
            "--scope",
            "secrets:write",
            "--scope",
            "secrets:read",
            "--data-dir",
            "d",
            "--json",
        ],
        d,
    );
    let (id, secret) = credential(&cred);
    std::fs::write(d.join("agent.json"), &cred).expect("credential");
    let (_, login) = raw(
        &server.url,
        "POST",
        "/v1/auth/approle/login",
        None,
        Some(&json!({"role_id": id, "secret_id": secret})),
    );
    let vt = login["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, w) = raw(
        &server.url,
        "POST",
        "/v1/secret/data/mqtt/broker-password",
        Some(&vt),
        Some(&json!({"data": {"value": "kv-written-7c1e"}})),
    );
    assert_eq!(status, 200, "{w}");
    let (status, w) = raw(
        &server.url,
        "POST",
        "/v1/secret/data/app/db",
        Some(&vt),
        Some(&json!({"data": {"user": "app", "password": "pw"}, "options": {"cas": 0}})),
    );
    assert_eq!(status, 200, "{w}");

    let native = token(&server.url, &id, &secret);
    let r = reqwest::blocking_client()
        .get(format!("{}/v1/secrets/mqtt/broker-password", server.url))
        .bearer(&native)
        .send()
        .expect("native");
    assert_eq!(r.json()["value"], "kv-written-7c1e");

    std::fs::write(
        d.join("agent.toml"),
        format!(
            r#"server = "{}"
credential_file = "agent.json"
status_file = "status.json"

[[secret]]
name = "mqtt/broker-password"
path = "out/broker-password"
mode = "0600"

[[secret]]
name = "app/db"
path = "out/db.json"
mode = "0600"
"#,
            server.url
        ),
    )
    .expect("agent config");
    let out = run(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(d.join("out/broker-password")).expect("delivered"),
        b"kv-written-7c1e"
    );
    let db: Value =
        serde_json::from_slice(&std::fs::read(d.join("out/db.json")).expect("delivered"))
            .expect("JSON");
    assert_eq!(db, json!({"user": "app", "password": "pw"}));
}
