//! Item 7: `client create --json` prints a credential file `castellan token --credential` accepts;
//! `--credential-out FILE` writes one with mode 0600.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

/// `castellan token --credential FILE` for a file, its stdout (the token) on success.
fn token_with(cred: &std::path::Path, cwd: &std::path::Path) -> std::process::Output {
    command(
        &["token", "--credential", cred.to_str().expect("path")],
        cwd,
    )
    .env_remove("CASTELLAN_SERVER")
    .output()
    .expect("castellan token")
}

#[test]
fn a_created_client_s_json_and_credential_file_get_tokens_from_the_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    ok(&["init"], cwd);
    let server = Server::start(&[], cwd);
    let listen = server.url.trim_start_matches("http://").to_owned();
    // On the store: the issuer is the configured listen address (what `serve` uses too).
    let printed = command(
        &[
            "client",
            "create",
            "svc",
            "--scope",
            "read",
            "--json",
            "--credential-out",
            "svc.json",
        ],
        cwd,
    )
    .env("CASTELLAN_LISTEN", &listen)
    .output()
    .expect("client create");
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&printed.stdout).expect("JSON");
    assert_eq!(
        json["token_endpoint"],
        format!("{}/oauth2/token", server.url),
        "{json}"
    );
    let stderr = String::from_utf8_lossy(&printed.stderr);
    assert!(stderr.contains("svc.json (mode 0600)"), "{stderr}");

    // The printed JSON, saved as is, is a credential file.
    let printed_file = cwd.join("printed.json");
    std::fs::write(&printed_file, &printed.stdout).expect("write");
    let out = token_with(&printed_file, cwd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // The written file: mode 0600, the same client, and it works too.
    let written = cwd.join("svc.json");
    let mode = std::fs::metadata(&written)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written).expect("read")).expect("JSON");
    assert_eq!(file["client_id"], json["client_id"]);
    assert_eq!(file["client_secret"], json["client_secret"]);
    let out = token_with(&written, cwd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Through --server, the endpoint is the server the command reached.
    let admin = cwd.join("castellan-data/admin-credential.json");
    let out = ok(
        &[
            "client",
            "create",
            "svc2",
            "--scope",
            "read",
            "--json",
            "--server",
            &server.url,
            "--credential",
            admin.to_str().expect("path"),
        ],
        cwd,
    );
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        json["token_endpoint"],
        format!("{}/oauth2/token", server.url)
    );
}

#[test]
fn a_credential_out_that_cannot_be_written_creates_no_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    ok(&["init"], cwd);
    let out = run(
        &[
            "client",
            "create",
            "svc",
            "--scope",
            "read",
            "--credential-out",
            "castellan-data/master.key/c.json",
        ],
        cwd,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--credential-out castellan-data/master.key/c.json"),
        "{stderr}"
    );
    let list = ok(&["client", "list"], cwd);
    assert!(!list.contains("svc"), "no client was created: {list}");
    // A public client has no secret to write.
    let out = run(
        &[
            "client",
            "create",
            "spa",
            "--public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--credential-out",
            "spa.json",
        ],
        cwd,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("public client has no secret"));
    assert!(!cwd.join("spa.json").exists());
}
