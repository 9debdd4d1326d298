//! Upstream sign-in end to end: a real `castellan serve --dev` with `[[identity_provider]]` entries,
//! node `oidc-provider` as the upstream provider (its own login and consent pages, PKCE, ID tokens),
//! a small fake provider (Python, PyJWT) for the attacks a real provider does not make, and headless
//! Chromium driven by selenium pressing "Continue with ..." on Castellan's login page. The app's code
//! is exchanged and its ID token verified with PyJWT against Castellan's JWKS.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::*;

/// A helper process, killed on drop.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for it to print `ready`.
fn helper(mut cmd: Command) -> Helper {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn helper");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "ready", "helper did not start");
    // Keep reading what it prints later, so it never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Helper(child)
}

/// Where `.ci/run` installs oidc-provider, or `None` (skipped outside CI).
fn tools() -> Option<PathBuf> {
    let npm = std::env::var_os("CASTELLAN_NPM_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/castellan-npm"))
        })?;
    let have = npm.join("node_modules/oidc-provider").is_dir()
        && Path::new("/usr/bin/chromedriver").exists()
        && Command::new("python3")
            .args(["-c", "import selenium, jwt, cryptography"])
            .status()
            .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "oidc-provider (npm), chromium-driver, selenium and PyJWT are needed (bash .ci/run installs them)"
        );
        eprintln!("skipped: oidc-provider, chromium-driver, selenium or PyJWT is missing");
        return None;
    }
    Some(npm)
}

/// The app's redirect URI: answers every request with 200.
fn app_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    port
}

fn provider_entry(name: &str, display: &str, issuer: &str, client_id: &str, first: &str) -> String {
    format!(
        r#"
[[identity_provider]]
name = "{name}"
display_name = "{display}"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret_file = "idp-secret"
first_signin = "{first}"
allowed_email_domains = ["corp.example"]
[identity_provider.claims]
groups = "groups"
"#
    )
}

#[test]
fn a_browser_signs_in_through_oidc_provider_and_every_attack_is_refused_with_a_page() {
    let Some(npm) = tools() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan");
    let (idp_port, fake_port) = (free_port(), free_port());
    let idp = format!("http://127.0.0.1:{idp_port}");
    let fake = format!("http://127.0.0.1:{fake_port}");
    let secret = "upstream-client-secret-0123456789abcdef";
    std::fs::write(cwd.join("idp-secret"), format!("{secret}\n")).expect("secret");
    let mut toml = String::new();
    toml += &provider_entry("corp", "Corp SSO", &idp, "castellan-create", "create");
    toml += &provider_entry(
        "corp-existing",
        "Corp SSO (accounts made here)",
        &idp,
        "castellan-existing",
        "existing",
    );
    for mode in ["tamper", "nonce", "issuer"] {
        toml += &provider_entry(
            &format!("fake-{mode}"),
            &format!("Fake {mode}"),
            &format!("{fake}/{mode}"),
            "castellan-fake",
            "create",
        );
    }
    std::fs::write(cwd.join("castellan.toml"), toml).expect("config");
    let server = Server::start(
        &["--dev", "--data-dir", "data", "--config", "castellan.toml"],
        cwd,
    );
    let callback = format!("{}/signin/upstream/callback", server.url);

    // oidc-provider is an ES module: run it where node finds the installed package.
    std::fs::copy(here.join("upstream_idp.mjs"), cwd.join("upstream_idp.mjs")).expect("copy");
    std::os::unix::fs::symlink(npm.join("node_modules"), cwd.join("node_modules")).expect("link");
    let mut node = Command::new("node");
    node.arg("upstream_idp.mjs")
        .args([&idp_port.to_string(), &callback, secret])
        .current_dir(cwd);
    let _idp = helper(node);
    let mut py = Command::new("python3");
    py.arg(here.join("fake_upstream.py"))
        .arg(fake_port.to_string());
    let _fake = helper(py);

    let app_port = app_server();
    let redirect = format!("http://127.0.0.1:{app_port}/cb");
    let created: Value = serde_json::from_str(&ok(
        &[
            "client",
            "create",
            "upstream-app",
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
    let client_id = created["client_id"].as_str().expect("id");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let out = Command::new("python3")
        .arg(here.join("upstream_signin.py"))
        .args([
            &server.url,
            client_id,
            &redirect,
            &idp,
            &shots.display().to_string(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "selenium: {}\nserver log: {}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("json");

    // The login page offers every provider; the first sign-in creates carol.
    let first = &seen["first"];
    assert!(
        first["buttons"]
            .as_array()
            .is_some_and(|b| b.iter().any(|t| t == "Continue with Corp SSO")),
        "{first}"
    );
    assert!(
        first["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&redirect)),
        "{first}"
    );
    assert_eq!(first["state"], "app-state");
    let sub = first["claims"]["sub"].as_str().expect("sub");
    assert!(sub.starts_with("usr_"), "{first}");
    let users: Value =
        serde_json::from_str(&ok(&["user", "list", "--json", "--data-dir", "data"], cwd))
            .expect("json");
    let carol = users["users"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == "carol"))
        .unwrap_or_else(|| panic!("carol was created: {users}"));
    assert_eq!(carol["user_id"], sub);
    assert_eq!(carol["email"], "carol@corp.example");
    assert_eq!(carol["groups"], serde_json::json!(["eng", "oncall"]));
    // Signed in again from a fresh browser: the same sub.
    assert_eq!(seen["again"]["claims"]["sub"], sub, "{}", seen["again"]);

    // Refusals, each a page saying why, never a redirect to the app.
    for (case, says) in [
        ("existing_refused", "no account here for `dave`"),
        ("domain", "evil.example"),
        ("tamper", "signature does not verify"),
        ("nonce", "nonce differs"),
        ("issuer", "another issuer"),
    ] {
        let r = &seen[case];
        assert_eq!(r["title"], "Sign-in did not succeed", "{case}: {r}");
        assert!(
            r["message"].as_str().is_some_and(|m| m.contains(says)),
            "{case}: {r}"
        );
        assert!(
            !r["url"].as_str().unwrap_or_default().starts_with(&redirect),
            "{case}: {r}"
        );
    }
    let users = ok(&["user", "list", "--json", "--data-dir", "data"], cwd);
    for nobody in [
        "dave",
        "mallory",
        "fake-tamper",
        "admin",
        "fake-nonce",
        "fake-issuer",
    ] {
        assert!(
            !users.contains(&format!("\"{nobody}\"")),
            "{nobody} was not created: {users}"
        );
    }
    for f in [
        "upstream-login.png",
        "upstream-provider.png",
        "upstream-after.png",
        "upstream-refused-after.png",
        "upstream-tamper-after.png",
    ] {
        assert!(
            shots.join(f).metadata().is_ok_and(|m| m.len() > 1000),
            "{f} saved"
        );
    }
}
