//! Sign-in with independent implementations: node `openid-client` as the relying party runs the whole
//! flow against a real `castellan serve --dev` (discovery, PKCE, the login form, the code exchange
//! with its own ID token checks, userinfo, refresh, revocation); PyJWT verifies the tokens it got.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Where `.ci/run` installs openid-client (`npm install --prefix DIR openid-client@6`).
fn npm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CASTELLAN_NPM_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/castellan-npm"))
        })?;
    if dir.join("node_modules/openid-client").is_dir() {
        return Some(dir);
    }
    let why = format!(
        "openid-client is not installed in {} (bash .ci/run installs it)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

#[test]
fn openid_client_signs_a_person_in_refreshes_and_revokes() {
    let Some(npm) = npm_dir() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let server = Server::start(&["--dev", "--data-dir", "data"], cwd);
    let user = run_with_stdin(
        &[
            "user",
            "create",
            "alice",
            "--email",
            "alice@example.com",
            "--password-stdin",
            "--data-dir",
            "data",
        ],
        cwd,
        b"correct horse battery\n",
    );
    assert!(
        user.status.success(),
        "{}",
        String::from_utf8_lossy(&user.stderr)
    );
    let redirect = "http://127.0.0.1:9/cb";
    let created = ok(
        &[
            "client",
            "create",
            "rp",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--redirect-uri",
            redirect,
            "--json",
            "--data-dir",
            "data",
        ],
        cwd,
    );
    let created: Value = serde_json::from_str(&created).expect("json");
    let id = created["client_id"].as_str().expect("id");
    let secret = created["client_secret"].as_str().expect("secret");
    // The script resolves `openid-client` from its own directory.
    std::os::unix::fs::symlink(npm.join("node_modules"), cwd.join("node_modules")).expect("link");
    let script = cwd.join("oidc_rp.mjs");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan/oidc_rp.mjs"),
        &script,
    )
    .expect("copy");
    let out = Command::new("node")
        .arg(&script)
        .args([
            &server.url,
            id,
            secret,
            redirect,
            "alice",
            "correct horse battery",
        ])
        .current_dir(cwd)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "openid-client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    assert!(
        seen["sub"].as_str().expect("sub").starts_with("usr_"),
        "{seen}"
    );
    assert_eq!(seen["nonce_matched"], true);
    assert_eq!(seen["aud"], id);
    assert!(seen["sid"].as_str().is_some_and(|s| s.starts_with("ses_")));
    assert_eq!(seen["userinfo"]["sub"], seen["sub"]);
    assert_eq!(seen["userinfo"]["preferred_username"], "alice");
    assert_eq!(seen["userinfo"]["email"], "alice@example.com");
    assert_eq!(seen["rotated"], true);
    assert_eq!(
        seen["afterRevoke"], "invalid_grant",
        "a revoked refresh token is refused"
    );
    assert_eq!(
        seen["oldAgain"], "invalid_grant",
        "a rotated refresh token is refused"
    );
    // PyJWT (another implementation) verifies both access tokens against the JWKS.
    for token in [&seen["access_token"], &seen["refreshed_access_token"]] {
        let check = Command::new("python3")
            .args([
                "-c",
                "import sys, jwt; c = jwt.PyJWKClient(sys.argv[1]); t = sys.argv[2]; \
                 k = c.get_signing_key_from_jwt(t); \
                 print(jwt.decode(t, k.key, algorithms=['RS256','ES256','EdDSA'], issuer=sys.argv[3], \
                 options={'verify_aud': False})['sub'])",
                &format!("{}/.well-known/jwks.json", server.url),
                token.as_str().expect("token"),
                &server.url,
            ])
            .output()
            .expect("python3");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&check.stdout).trim(),
            seen["sub"].as_str().expect("sub")
        );
    }
}
