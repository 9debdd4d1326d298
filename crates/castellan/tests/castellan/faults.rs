//! Issue 21 through the binary: `keys rotate --now` on the store while a replica runs (it signs only
//! once the replica publishes the key), and `client create --cert-name` on the store and through
//! `--server` bounding what `pki issue --server` may be given.

use crate::support::*;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn rotate_now_on_the_store_waits_for_the_running_replica_and_cert_names_bound_issuance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    let server = Server::start(&["--data-dir", "d"], d);
    let before = jwks_kids(&server.url);

    let help = ok(&["keys", "rotate", "--help"], d);
    assert!(
        help.contains("--wait") && help.contains("--force"),
        "{help}"
    );
    let out = ok(&["keys", "rotate", "--now", "--data-dir", "d"], d);
    let kid = out.split_whitespace().next().expect("kid").to_owned();
    assert!(
        !before.contains(&kid) && out.contains("signs from"),
        "{out}"
    );
    // It returned only once the replica published the key: its JWKS holds it now.
    assert!(jwks_kids(&server.url).contains(&kid), "{out}");

    // Certificate name patterns: checked when given, on the store and through the server.
    let bad = run(
        &[
            "client",
            "create",
            "x",
            "--scope",
            "pki:issue",
            "--cert-name",
            "dns:Bad",
            "--data-dir",
            "d",
        ],
        d,
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("certificate name pattern `dns:Bad`"),
        "{}",
        text(&bad)
    );
    let admin = d.join("d/admin-credential.json");
    let remote = [
        "--server",
        server.url.as_str(),
        "--credential",
        admin.to_str().expect("utf-8"),
    ];
    let mut create = vec![
        "client",
        "create",
        "app",
        "--scope",
        "pki:issue",
        "--cert-name",
        "*.app.svc",
        "--json",
    ];
    create.extend_from_slice(&remote);
    std::fs::write(d.join("app.json"), ok(&create, d)).expect("credential");
    let as_app = ["--server", server.url.as_str(), "--credential", "app.json"];
    let mut issue = vec![
        "pki",
        "issue",
        "--profile",
        "server",
        "--dns",
        "web.app.svc",
        "--out",
        "ok",
    ];
    issue.extend_from_slice(&as_app);
    ok(&issue, d);
    let sans = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            "ok/cert.pem",
        ])
        .current_dir(d)
        .output()
        .expect("openssl");
    assert!(String::from_utf8_lossy(&sans.stdout).contains("DNS:web.app.svc"));
    let mut outside = vec![
        "pki",
        "issue",
        "--profile",
        "server",
        "--dns",
        "billing.svc",
        "--out",
        "no",
    ];
    outside.extend_from_slice(&as_app);
    let out = run(&outside, d);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not among the certificate names client `app`"),
        "{}",
        text(&out)
    );
    assert!(!d.join("no").exists());

    // A pki:issue client made without patterns is told which flag it needs.
    std::fs::write(
        d.join("bare.json"),
        ok(
            &[
                "client",
                "create",
                "bare",
                "--scope",
                "pki:issue",
                "--json",
                "--data-dir",
                "d",
            ],
            d,
        ),
    )
    .expect("credential");
    let out = run(
        &[
            "pki",
            "issue",
            "--profile",
            "server",
            "--dns",
            "web.app.svc",
            "--out",
            "no",
            "--server",
            &server.url,
            "--credential",
            "bare.json",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("--cert-name"), "{}", text(&out));
}
