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

/// A tiny HTTP server standing in for the app's redirect URI: it answers every request with 200.
fn callback_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        use std::io::{Read, Write};
        listener.set_nonblocking(false).expect("blocking");
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, handle)
}

#[test]
fn a_real_browser_signs_in_by_typing_into_the_login_page() {
    let have = Command::new("python3")
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success())
        && std::path::Path::new("/usr/bin/chromedriver").exists();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium, chromium-driver and selenium are needed (bash .ci/run installs them)"
        );
        eprintln!("skipped: chromium-driver or selenium is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let server = Server::start(&["--dev", "--data-dir", "data"], cwd);
    let user = run_with_stdin(
        &[
            "user",
            "create",
            "bob",
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
    let (port, _cb) = callback_server();
    let redirect = format!("http://127.0.0.1:{port}/cb");
    let created: Value = serde_json::from_str(&ok(
        &[
            "client",
            "create",
            "browser-app",
            "--public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            &redirect,
            "--json",
            "--data-dir",
            "data",
        ],
        cwd,
    ))
    .expect("json");
    let id = created["client_id"].as_str().expect("id");
    let challenge = castellan_core::signin::pkce::challenge_of(&"v".repeat(50));
    let authorize = format!(
        "{}/oauth2/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=openid&state=s-1&code_challenge={challenge}&code_challenge_method=S256",
        server.url,
        form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let out = Command::new("python3")
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/castellan/browser_signin.py"),
        )
        .args([
            &authorize,
            &server.url,
            "bob",
            "correct horse battery",
            &shots.display().to_string(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "selenium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        seen["wrong_error"]
            .as_str()
            .is_some_and(|e| e.contains("name or password is not right")),
        "{seen}"
    );
    let back = seen["after_sign_in"].as_str().expect("url");
    assert!(back.starts_with(&redirect), "sent back to the app: {back}");
    assert!(
        back.contains("code=") && back.contains("state=s-1"),
        "{back}"
    );
    assert_eq!(seen["account_name"], "bob");
    for f in ["login.png", "login-failed.png", "account.png"] {
        assert!(
            shots.join(f).metadata().is_ok_and(|m| m.len() > 1000),
            "{f} saved"
        );
    }
}
