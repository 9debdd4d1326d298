//! Item 10: the Go verifier of docs/verifiers.md, built with Debian's packaged golang-jwt (GOPATH
//! mode, no module download) and run against a live Castellan served over HTTPS with its own CA.

use std::path::Path;
use std::process::Command;

use crate::support::*;

const GOPATH: &str = "/usr/share/gocode";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The Go program of docs/verifiers.md's "Go with Debian's packaged `golang-jwt`" section.
fn go_program() -> String {
    let text = std::fs::read_to_string(repo().join("docs/verifiers.md")).expect("verifiers.md");
    let after = &text[text
        .find("## Go with Debian's packaged")
        .expect("the Go section")..];
    let start = after.find("```go\n").expect("go fence") + 6;
    let len = after[start..].find("```").expect("end of fence");
    after[start..start + len].to_owned()
}

/// Whether go and the packaged golang-jwt are here; under CI=true their absence is a failure.
fn go_available() -> bool {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let lib = Path::new(GOPATH)
        .join("src/github.com/golang-jwt/jwt")
        .is_dir();
    if go && lib {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: go and golang-github-golang-jwt-jwt-dev must be installed (.ci/run installs them)"
    );
    eprintln!(
        "skipped: needs `apt-get install golang-go golang-github-golang-jwt-jwt-dev` (go: {go}, golang-jwt in {GOPATH}: {lib})"
    );
    false
}

#[test]
fn the_go_example_builds_with_debian_packages_and_verifies_over_https_with_castellan_s_ca() {
    if !go_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("verify.go"), go_program()).expect("write");
    let build = Command::new("go")
        .args(["build", "-o", "verify", "verify.go"])
        .current_dir(d)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOFLAGS", "")
        .env("GOCACHE", d.join("gocache"))
        .output()
        .expect("go build");
    assert!(
        build.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&build.stderr)
    );

    ok(&["init", "--data-dir", "d"], d);
    ok(&["pki", "ca", "--data-dir", "d", "--out", "ca"], d);
    let server = Server::start_https(
        &["--data-dir", "d", "--tls-self-issued"],
        d,
        Path::new("ca/root.pem"),
    );
    ok(
        &[
            "client",
            "create",
            "payments",
            "--scope",
            "payments:read",
            "--audience",
            "payments-api",
            "--data-dir",
            "d",
            "--credential-out",
            "payments.json",
        ],
        d,
    );
    let token = ok(
        &[
            "token",
            "--credential",
            "payments.json",
            "--server",
            &server.url,
            "--ca-file",
            "ca/root.pem",
        ],
        d,
    )
    .trim()
    .to_owned();
    let claims = jwt_claims(&token);
    let issuer = claims["iss"].as_str().expect("iss").to_owned();
    // The program fetches the JWKS from the issuer (https://127.0.0.1:PORT, a name of the
    // self-issued certificate).
    assert!(
        issuer.starts_with("https://")
            && issuer.ends_with(&server.url[server.url.rfind(':').expect("port")..]),
        "{issuer}"
    );
    let verify = |iss: &str, ca: &str, aud: &str| {
        Command::new(d.join("verify"))
            .args([iss, ca, aud, &token])
            .current_dir(d)
            .output()
            .expect("verify")
    };
    let fetch_as = issuer.clone();
    let out = verify(&fetch_as, "ca/root.pem", "payments-api");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Go verifier refused the token: {stderr}"
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("claims");
    assert_eq!(printed["aud"], "payments-api");
    assert_eq!(printed["iss"], issuer);
    // PyJWT, as docs/verifiers.md says to trust Castellan's own CA (ssl_context).
    let py = format!(
        "import jwt, ssl, sys\nctx = ssl.create_default_context(cafile='ca/root.pem')\n\
         jwks = jwt.PyJWKClient('{issuer}/.well-known/jwks.json', ssl_context=ctx)\n\
         key = jwks.get_signing_key_from_jwt(sys.argv[1])\n\
         print(jwt.decode(sys.argv[1], key.key, algorithms=['RS256'], audience='payments-api', issuer='{issuer}')['aud'])\n"
    );
    let out = Command::new("python3")
        .args(["-c", &py, &token])
        .current_dir(d)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "PyJWT over HTTPS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "payments-api");
    // Another audience is refused; without Castellan's root the HTTPS fetch is refused.
    let out = verify(&fetch_as, "ca/root.pem", "billing-api");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong iss or aud"));
    let out = verify(&fetch_as, "", "payments-api");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The claims of a JWT, unverified (to read its issuer).
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
