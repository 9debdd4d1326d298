//! Issue 18, the cutover: tokens an old service signed with its one shared RSA key (made with the
//! `openssl` CLI, a custom kid) and issued before the import keep verifying through Castellan's JWKS
//! with PyJWT's `PyJWKClient` — after `keys import --kid`, while the key signs (current), through its
//! retirement — until they expire.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

const LEGACY_KID: &str = "auth-2019-rsa";

fn py(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan/cutover.py"))
        .args(args)
        .output()
        .expect("python3")
}

fn verify(url: &str, token: &str) -> Result<serde_json::Value, String> {
    let out = py(&["verify", &format!("{url}/.well-known/jwks.json"), token]);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("claims"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn legacy_tokens_verify_after_the_import_through_retirement_until_they_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let server = Server::start(&["--dev", "--data-dir", "data"], cwd);
    let url = server.url.clone();
    let keygen = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(cwd.join("legacy.pem"))
        .output()
        .expect("openssl");
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let pem = cwd.join("legacy.pem");
    let pem = pem.to_str().expect("path");
    // Issued by the old service before the cutover: one long-lived, one that expires soon.
    let sign = |exp_in: &str| {
        let out = py(&["sign", pem, LEGACY_KID, exp_in]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let long = sign("3600");
    let short = sign("25");
    let short_expires = Instant::now() + Duration::from_secs(25);

    // Before the import Castellan does not know the kid: the verifier cannot find a key.
    let e = verify(&url, &long).expect_err("not yet published");
    assert!(e.contains("PyJWKClientError"), "{e}");

    // The import keeps the kid; a bad kid is refused.
    let bad = run(
        &[
            "keys",
            "import",
            "--pem",
            pem,
            "--kid",
            "has space",
            "--data-dir",
            "data",
        ],
        cwd,
    );
    assert!(!bad.status.success());
    let out = ok(
        &[
            "keys",
            "import",
            "--pem",
            pem,
            "--kid",
            LEGACY_KID,
            "--state",
            "current",
            "--data-dir",
            "data",
        ],
        cwd,
    );
    assert!(
        out.contains(&format!("imported {LEGACY_KID} as current")),
        "{out}"
    );
    wait_for("the JWKS to publish the legacy kid", || {
        jwks_kids(&url).iter().any(|k| k == LEGACY_KID)
    });
    for t in [&long, &short] {
        let c = verify(&url, t).unwrap_or_else(|e| panic!("after the import: {e}"));
        assert_eq!(c["sub"], "user-1");
    }
    // While it is current, Castellan signs with it, under the same kid.
    let admin = std::fs::read_to_string(cwd.join("data/admin-credential.json")).expect("cred");
    let (id, secret) = credential(&admin);
    wait_for("Castellan to sign with the imported key", || {
        kid_of(&token(&url, &id, &secret)) == LEGACY_KID
    });

    // Retirement: a new key signs, the legacy one stays published for the tokens in flight.
    ok(&["keys", "rotate", "--now", "--data-dir", "data"], cwd);
    wait_for("a new current key", || {
        kid_of(&token(&url, &id, &secret)) != LEGACY_KID
    });
    let keys = ok(&["keys", "list", "--json", "--data-dir", "data"], cwd);
    let keys: serde_json::Value = serde_json::from_str(&keys).expect("json");
    let legacy = keys
        .as_array()
        .or_else(|| keys["keys"].as_array())
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == LEGACY_KID)
        .cloned()
        .expect("the legacy key is still listed");
    assert_eq!(legacy["state"], "retired");
    for t in [&long, &short] {
        verify(&url, t).unwrap_or_else(|e| panic!("after the retirement: {e}"));
    }

    // Until they expire: the short one is refused for its expiry alone, the key still published.
    std::thread::sleep(
        short_expires.saturating_duration_since(Instant::now()) + Duration::from_secs(2),
    );
    assert!(jwks_kids(&url).iter().any(|k| k == LEGACY_KID));
    let e = verify(&url, &short).expect_err("expired");
    assert!(e.contains("ExpiredSignatureError"), "{e}");
    verify(&url, &long).expect("the long-lived one still verifies");
    drop(server);
}

/// `castellan client policy` and `castellan token sign`, through the server (as the caller) and on
/// the store (under a named client's policy); PyJWT verifies both through the JWKS; a refusal names
/// the rule.
#[test]
fn token_sign_through_the_server_and_on_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let server = Server::start(&["--dev", "--data-dir", "data"], cwd);
    let created = ok(
        &[
            "client",
            "create",
            "legacy-auth",
            "--scope",
            "tokens:sign",
            "--json",
            "--data-dir",
            "data",
        ],
        cwd,
    );
    std::fs::write(cwd.join("legacy-auth.json"), &created).expect("write");
    let policy = ok(
        &[
            "client",
            "policy",
            "legacy-auth",
            "--allow-audience",
            "orders",
            "--sign-claim",
            "tenant",
            "--sign-sub",
            "user:*",
            "--sign-max-ttl",
            "10m",
            "--data-dir",
            "data",
        ],
        cwd,
    );
    assert!(policy.contains("\"sign_max_ttl_secs\": 600"), "{policy}");
    let remote = [
        "token",
        "sign",
        "--server",
        &server.url,
        "--credential",
        "legacy-auth.json",
        "--sub",
        "user:1",
        "--aud",
        "orders",
        "--claim",
        "tenant=t1",
    ];
    // The server learns the policy within its refresh interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    let via_server = loop {
        let out = run(&remote, cwd);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let on_store = ok(
        &[
            "token",
            "sign",
            "--client",
            "legacy-auth",
            "--sub",
            "user:2",
            "--aud",
            "orders",
            "--lifetime",
            "1m",
            "--data-dir",
            "data",
        ],
        cwd,
    );
    // On the store the issuer is the CLI's configured one (`issuer`; the same --config as the servers'
    // in production), here not the test server's own URL: that one is checked for the server's token.
    for (t, sub, iss) in [
        (via_server.as_str(), "user:1", server.url.as_str()),
        (on_store.trim(), "user:2", "-"),
    ] {
        let check = Command::new("python3")
            .args([
                "-c",
                "import sys, jwt; c = jwt.PyJWKClient(sys.argv[1]); t = sys.argv[2]; \
                 k = c.get_signing_key_from_jwt(t); \
                 i = sys.argv[3]; \
                 print(jwt.decode(t, k.key, algorithms=['RS256','ES256','EdDSA'], audience='orders', \
                 issuer=i if i != '-' else None, options={'verify_iss': i != '-'})['sub'])",
                &format!("{}/.well-known/jwks.json", server.url),
                t,
                iss,
            ])
            .output()
            .expect("python3");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), sub);
    }
    let mut refused: Vec<&str> = remote.to_vec();
    refused.extend(["--lifetime", "1h"]);
    let out = run(&refused, cwd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") && err.contains("rule `lifetime`"),
        "{err}"
    );
}
