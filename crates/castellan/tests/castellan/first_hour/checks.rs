//! Item 9: `config check` of agent and dev files; a discovery document of what exists; no stray `=`
//! in `--help`; no "already exists" notices on a PostgreSQL start; `keys list` of an imported key.

use std::path::Path;

use crate::support::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn config_check_tells_server_agent_and_dev_files_apart_and_names_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let agent = repo().join("deploy/compose/agent.toml");
    let out = ok(&["config", "check", agent.to_str().expect("path")], d);
    assert!(
        out.contains("ok (agent configuration: 2 certificate(s)"),
        "{out}"
    );
    let server = repo().join("castellan.example.toml");
    let out = ok(&["config", "check", server.to_str().expect("path")], d);
    assert!(out.contains("ok (server configuration"), "{out}");
    // The dev starter, as `dev up` writes it.
    ok(
        &[
            "dev",
            "up",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ],
        d,
    );
    ok(&["dev", "down"], d);
    let out = ok(&["config", "check", "castellan-dev.toml"], d);
    assert!(
        out.contains("ok (dev configuration: 2 certificate(s), 0 secret(s)"),
        "{out}"
    );

    // Mistakes are named with their line, in each kind.
    let bad_dev = "[[certificate]]\nname = \"broker\"\nprofile = \"server\"\ndns = [\"localhost\"]\nowner = \"no-such-user-xyz\"\n";
    std::fs::write(d.join("bad-dev.toml"), bad_dev).expect("write");
    let out = run(&["config", "check", "bad-dev.toml"], d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no user `no-such-user-xyz`") && err.contains("line 5"),
        "{err}"
    );
    let bad_agent = "server = \"http://127.0.0.1:8270\"\ncredential_file = \"a.json\"\n[[certificate]]\nname = \"b\"\nprofile = \"server\"\ndir = \"certs\"\ndns = [\"x\"]\nttl = \"soon\"\n";
    std::fs::write(d.join("bad-agent.toml"), bad_agent).expect("write");
    let out = run(&["config", "check", "bad-agent.toml"], d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ttl") && err.contains("line 8"), "{err}");
    // A dev file checked as an agent's says what an agent needs.
    let out = run(
        &["config", "check", "castellan-dev.toml", "--kind", "agent"],
        d,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server"));
}

#[test]
fn help_shows_no_stray_equals_sign_after_an_unset_environment_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["token", "--help"][..],
        &["client", "create", "--help"],
        &["keys", "list", "--help"],
        &["pki", "issue", "--help"],
        &["secret", "get", "--help"],
    ] {
        let out = command(args, dir.path())
            .env_remove("CASTELLAN_SERVER")
            .env_remove("CASTELLAN_TOKEN")
            .output()
            .expect("help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("[env: CASTELLAN_"), "{args:?}: {text}");
        assert!(!text.contains("=]"), "{args:?}: {text}");
    }
}

#[test]
fn the_discovery_document_lists_only_response_types_that_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&["init"], dir.path());
    let server = Server::start(&[], dir.path());
    let doc = reqwest::blocking_client()
        .get(format!("{}/.well-known/openid-configuration", server.url))
        .send()
        .expect("discovery")
        .json();
    assert_eq!(
        doc["response_types_supported"],
        serde_json::json!(["code"]),
        "{doc}"
    );
    // ID tokens exist since sign-in (the authorization code flow): their algorithms are the ring's.
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"]),
        "{doc}"
    );
}

#[test]
fn a_postgres_start_logs_no_already_exists_notices() {
    let Some(db) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(castellan_store::testing::fresh_postgres_database(
            "first_hour_notices",
        ))
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mk = master_key_file(d, "master.key");
    let common = [
        "--database-url",
        db.as_str(),
        "--master-key-file",
        mk.to_str().expect("mk"),
    ];
    ok(&[&["init"][..], &common].concat(), d);
    // The second start finds every object of the schema in place.
    for _ in 0..2 {
        let server = Server::start(&common, d);
        let log = server.log_text();
        assert!(log.contains("castellan is serving"), "{log}");
        assert!(!log.contains("already exists"), "{log}");
        server.terminate();
    }
}

#[test]
fn keys_list_shows_no_1970_for_an_imported_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init"], d);
    let keygen = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(d.join("old.pem"))
        .output()
        .expect("openssl");
    assert!(keygen.status.success());
    let out = ok(&["keys", "import", "--pem", "old.pem"], d);
    assert!(out.contains("as retired"), "{out}");
    let list = ok(&["keys", "list"], d);
    assert!(!list.contains("1970"), "{list}");
    let line = list
        .lines()
        .find(|l| l.contains("retired"))
        .expect("the imported key");
    assert!(line.split_whitespace().nth(3) == Some("-"), "{list}");
}
