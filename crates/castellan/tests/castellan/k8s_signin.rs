//! Issue 19: workloads sign in with Kubernetes service-account tokens (RFC 7523 client assertions)
//! against a test issuer the test makes (k8s_issuer.py: its own RSA key pair and JWKS, tokens shaped
//! like projected tokens with `kubernetes.io` claims). One issuer is found by OIDC discovery served
//! over HTTP by the test, one through a JWKS file. Castellan's tokens are verified with PyJWT.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const AUDIENCE: &str = "castellan";
const FILE_ISSUER: &str = "https://oidc.file-cluster.example";

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/castellan")
        .join(name)
}

/// A process killed on drop.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test issuer: keys in `dir/issuer`, discovery and JWKS served at `url` (as the API server serves
/// /.well-known/openid-configuration and /openid/v1/jwks).
struct Issuer {
    dir: std::path::PathBuf,
    url: String,
    _http: Killed,
}

impl Issuer {
    fn start(dir: &Path) -> Issuer {
        let keys = dir.join("issuer");
        let site = dir.join("site");
        std::fs::create_dir_all(site.join(".well-known")).expect("site");
        std::fs::create_dir_all(site.join("openid/v1")).expect("site");
        std::fs::create_dir_all(&keys).expect("keys");
        let out = Command::new("python3")
            .arg(script("k8s_issuer.py"))
            .arg("keys")
            .arg(&keys)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        std::fs::write(
            site.join(".well-known/openid-configuration"),
            json!({"issuer": url, "jwks_uri": format!("{url}/openid/v1/jwks"),
                   "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                   "id_token_signing_alg_values_supported": ["RS256"]})
            .to_string(),
        )
        .expect("discovery");
        std::fs::copy(keys.join("jwks.json"), site.join("openid/v1/jwks")).expect("jwks");
        std::fs::copy(keys.join("jwks.json"), dir.join("file-jwks.json")).expect("jwks file");
        let http = Killed(
            Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                ])
                .arg(&site)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("http.server"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Issuer {
            dir: keys,
            url,
            _http: http,
        }
    }

    /// A token; `spec` overrides the defaults (this issuer, audience castellan, payments/invoicer,
    /// ten minutes).
    fn token(&self, spec: Value) -> String {
        let mut s = json!({"iss": self.url, "aud": AUDIENCE, "namespace": "payments", "sa": "invoicer", "exp_in": 600});
        for (k, v) in spec.as_object().expect("object") {
            s[k] = v.clone();
        }
        let out = Command::new("python3")
            .arg(script("k8s_issuer.py"))
            .arg("token")
            .arg(&self.dir)
            .arg(s.to_string())
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
}

fn config(issuer: &Issuer) -> String {
    format!(
        r#"
[[trusted_issuer]]
issuer = "{url}"
discovery = true
audience = "{AUDIENCE}"
subject = "system:serviceaccount:payments:*"
client_id = "k8s:{{namespace}}:{{serviceaccount}}"
scopes = ["secrets:read:payments", "invoices:read"]

[[trusted_issuer]]
issuer = "{FILE_ISSUER}"
jwks_file = "file-jwks.json"
audience = "{AUDIENCE}"
subject = "system:serviceaccount:agents:agent"
pod = "agent-*"
client_id = "agent"
scopes = ["secrets:read"]
token_ttl = "2s"
"#,
        url = issuer.url
    )
}

fn setup(dir: &Path) -> (Issuer, Server) {
    let issuer = Issuer::start(dir);
    ok(&["init", "--data-dir", "d"], dir);
    std::fs::write(dir.join("castellan.toml"), config(&issuer)).expect("config");
    let server = Server::start(&["--data-dir", "d", "--config", "castellan.toml"], dir);
    (issuer, server)
}

fn assert_with(server: &Server, assertion: &str, extra: &[(&str, &str)]) -> reqwest::Resp {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    reqwest::blocking_client()
        .post(format!("{}/oauth2/token", server.url))
        .form(&form)
        .send()
        .expect("token request")
}

/// Castellan's access token verified by PyJWT against Castellan's JWKS.
fn verified_by_pyjwt(dir: &Path, server: &Server, token: &str) -> Value {
    let jwks = reqwest::blocking_client()
        .get(format!("{}/.well-known/jwks.json", server.url))
        .send()
        .expect("jwks");
    std::fs::write(dir.join("castellan-jwks.json"), &jwks.body).expect("jwks file");
    let out = Command::new("python3")
        .arg(script("verify_jwt.py"))
        .arg(dir.join("castellan-jwks.json"))
        .arg(token)
        .arg(&server.url)
        .arg(&server.url)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "PyJWT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("claims")
}

#[test]
fn a_service_account_token_signs_in_as_its_mapped_client_with_its_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (issuer, server) = setup(dir.path());
    let r = assert_with(&server, &issuer.token(json!({})), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let claims = verified_by_pyjwt(
        dir.path(),
        &server,
        r.json()["access_token"].as_str().expect("token"),
    );
    assert_eq!(claims["sub"], "k8s:payments:invoicer");
    assert_eq!(claims["client_id"], "k8s:payments:invoicer");
    assert_eq!(claims["scope"], "secrets:read:payments invoices:read");
    // The token works on /v1 within its scopes (the mapped client is not in the store).
    let token = r.json()["access_token"].as_str().expect("token").to_owned();
    let get = |name: &str| {
        reqwest::blocking_client()
            .get(format!("{}/v1/secrets/{name}", server.url))
            .bearer(&token)
            .send()
            .expect("get")
    };
    assert_eq!(
        get("payments/none").status,
        404,
        "{}",
        String::from_utf8_lossy(&get("payments/none").body)
    );
    assert_eq!(get("billing/none").status, 403);
    // The mapping's placeholders follow the token: another service account of the namespace.
    let r = assert_with(
        &server,
        &issuer.token(json!({"sa": "billing"})),
        &[("scope", "invoices:read")],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let claims = verified_by_pyjwt(
        dir.path(),
        &server,
        r.json()["access_token"].as_str().expect("token"),
    );
    assert_eq!(claims["sub"], "k8s:payments:billing");
    assert_eq!(claims["scope"], "invoices:read");
    // A scope the mapping does not give.
    let r = assert_with(&server, &issuer.token(json!({})), &[("scope", "admin")]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_scope");
    // The file issuer, with its pod pattern and lifetime.
    let file_token = issuer.token(
        json!({"iss": FILE_ISSUER, "namespace": "agents", "sa": "agent", "pod": "agent-5c7d"}),
    );
    let r = assert_with(&server, &file_token, &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["expires_in"], 2);
    // A client_id sent with the assertion must be the mapped one.
    let r = assert_with(&server, &file_token, &[("client_id", "agent")]);
    assert_eq!(r.status, 200);
    let r = assert_with(&server, &file_token, &[("client_id", "someone-else")]);
    assert_eq!(r.status, 401);
}

#[test]
fn every_bad_assertion_is_invalid_client_for_its_own_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (issuer, server) = setup(dir.path());
    let cases: Vec<(&str, Value, &str)> = vec![
        ("another key", json!({"key": "other"}), "InvalidSignature"),
        (
            "wrong audience",
            json!({"aud": "kubernetes"}),
            "InvalidAudience",
        ),
        (
            "another namespace",
            json!({"namespace": "billing"}),
            "no trusted_issuer entry maps",
        ),
        ("expired", json!({"exp_in": -3600}), "has expired"),
        (
            "not yet valid",
            json!({"nbf_in": 3600, "exp_in": 7200}),
            "not valid yet",
        ),
        (
            "unknown issuer",
            json!({"iss": "https://evil.example"}),
            "issuer is not trusted",
        ),
        (
            "alg none",
            json!({"alg": "none"}),
            "not a JWT with a known alg",
        ),
        ("HS256", json!({"alg": "HS256"}), "HS256"),
        (
            "sub not the kubernetes.io claims",
            json!({"sub": "system:serviceaccount:payments:admin", "sa": "other"}),
            "does not match the kubernetes.io",
        ),
        (
            "pod not matching",
            json!({"iss": FILE_ISSUER, "namespace": "agents", "sa": "agent", "pod": "intruder-1"}),
            "no trusted_issuer entry maps",
        ),
    ];
    for (what, spec, reason) in cases {
        let before = server.log_text().matches(reason).count();
        let r = assert_with(&server, &issuer.token(spec), &[]);
        assert_eq!(
            r.status,
            401,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["error"], "invalid_client", "{what}");
        assert!(r.headers.contains_key("www-authenticate"), "{what}");
        // Refused for the reason of the case, not another one.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.log_text().matches(reason).count() <= before {
            assert!(
                Instant::now() < deadline,
                "{what}: `{reason}` not in the log:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Not a JWT at all, a wrong assertion type, and an assertion beside a secret.
    assert_eq!(assert_with(&server, "not-a-jwt", &[]).status, 401);
    let r = reqwest::blocking_client()
        .post(format!("{}/oauth2/token", server.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:x"),
            ("client_assertion", "a.b.c"),
        ])
        .send()
        .expect("token");
    assert_eq!(r.status, 401);
    let r = assert_with(
        &server,
        &issuer.token(json!({})),
        &[("client_id", "x"), ("client_secret", "y")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
    // The assertion never reaches the log.
    let good = issuer.token(json!({}));
    assert_with(&server, &good, &[("client_id", "wrong")]);
    let sig = good.rsplit('.').next().expect("signature");
    assert!(!server.log_text().contains(sig), "the assertion was logged");
}

#[test]
fn a_rotated_issuer_key_is_fetched_on_its_first_token_but_not_more_often_than_the_cool_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (issuer, server) = setup(d);
    let started = Instant::now();
    let file = |kid: &str| {
        issuer.token(json!({"iss": FILE_ISSUER, "namespace": "agents", "sa": "agent", "pod": "agent-1", "kid": kid}))
    };
    assert_eq!(assert_with(&server, &file("issuer-key-1"), &[]).status, 200);
    let rotate_jwks = |kid: &str| {
        let out = Command::new("python3")
            .arg(script("k8s_issuer.py"))
            .args(["rotate"])
            .arg(&issuer.dir)
            .arg(kid)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::copy(issuer.dir.join("jwks.json"), d.join("file-jwks.json")).expect("jwks file");
    };
    // Past the cool-down of the start-up fetch, the cluster rotates its key: the first token with the
    // new kid makes the server read the JWKS again, and it signs in.
    std::thread::sleep(Duration::from_secs(11).saturating_sub(started.elapsed()));
    rotate_jwks("issuer-key-2");
    assert_eq!(assert_with(&server, &file("issuer-key-2"), &[]).status, 200);
    // Another rotation at once: within the cool-down the new kid is unknown, and stays so...
    rotate_jwks("issuer-key-3");
    let third = file("issuer-key-3");
    let r = assert_with(&server, &third, &[]);
    assert_eq!(r.status, 401);
    let log = server.log_text();
    assert!(log.contains("no key of the issuer verifies it"), "{log}");
    // ... until the cool-down has passed.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(assert_with(&server, &third, &[]).status, 200);
}

fn wait_for_file(path: &Path, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|s| s == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {want:?}; agent log:\n{}",
            path.display(),
            std::fs::read_to_string(
                path.parent()
                    .and_then(Path::parent)
                    .map(|d| d.join("agent.log"))
                    .unwrap_or_default()
            )
            .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn put_secret(dir: &Path, value: &str) {
    let out = run_with_stdin(
        &["secret", "put", "app/db", "--data-dir", "d"],
        dir,
        value.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces the token file the way the kubelet does: a new file renamed over the old one.
fn rotate(dir: &Path, token: &str) {
    let tmp = dir.join("token.new");
    std::fs::write(&tmp, token).expect("token");
    std::fs::rename(&tmp, dir.join("token")).expect("rename");
}

#[test]
fn the_agent_signs_in_with_its_projected_token_and_follows_its_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (issuer, server) = setup(d);
    put_secret(d, "v1");
    let spec = |exp_in: i64| json!({"iss": FILE_ISSUER, "namespace": "agents", "sa": "agent", "pod": "agent-5c7d", "exp_in": exp_in});
    // The first token is good for 3 s more (+ the server's 10 s leeway); the kubelet then rotates it.
    let first = issuer.token(spec(3));
    let first_dies = Instant::now() + Duration::from_secs(14);
    rotate(d, &first);
    std::fs::write(
        d.join("agent.toml"),
        format!(
            "server = \"{}\"\nauth = \"kubernetes\"\ntoken_file = \"token\"\nsecret_check_interval = \"1s\"\n\n[[secret]]\nname = \"app/db\"\npath = \"out/db\"\n",
            server.url
        ),
    )
    .expect("agent.toml");
    // A credential file is refused beside auth = "kubernetes".
    std::fs::write(d.join("bad.toml"), format!("server = \"{}\"\nauth = \"kubernetes\"\ncredential_file = \"x.json\"\n[[secret]]\nname = \"app/db\"\npath = \"out/x\"\n", server.url)).expect("bad");
    let out = run(&["agent", "--config", "bad.toml", "--once"], d);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token_file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _agent = Killed(
        Command::new(bin())
            .args(["agent", "--config", "agent.toml"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("agent.log")).expect("log"))
            .spawn()
            .expect("agent"),
    );
    wait_for_file(&d.join("out/db"), "v1", Duration::from_secs(15));
    rotate(d, &issuer.token(spec(600)));
    // Past the first token's end: only the rotated one signs in now.
    while Instant::now() < first_dies {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        assert_with(&server, &first, &[]).status,
        401,
        "the first token still signs in"
    );
    put_secret(d, "v2");
    wait_for_file(&d.join("out/db"), "v2", Duration::from_secs(15));

    // A token file the server refuses: the agent says so and fails.
    rotate(d, &issuer.token(json!({"iss": FILE_ISSUER, "namespace": "agents", "sa": "agent", "pod": "agent-5c7d", "exp_in": 600, "key": "other"})));
    let out = run(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the agent's credential"), "{err}");
}
