//! Issue 22 end to end: the CLI's changes and a server's /v1 calls land in the trail once each;
//! `castellan audit list` filters them; `castellan audit verify` passes an untouched trail (store and
//! JSON-lines file) and names the event edited in the store; no secret reaches either sink.

use crate::support::*;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_trail_lists_verifies_and_names_an_edited_event_sqlite() {
    the_trail_lists_verifies_and_names_an_edited_event(None);
}

#[test]
fn the_trail_lists_verifies_and_names_an_edited_event_postgres() {
    let Some(db) = tokio::runtime::Runtime::new().expect("rt").block_on(
        castellan_store::testing::fresh_postgres_database("audit_cli"),
    ) else {
        return;
    };
    the_trail_lists_verifies_and_names_an_edited_event(Some(db));
}

/// The same commands on SQLite in `d/`, or on PostgreSQL at `pg` (`--database-url` after each
/// `--data-dir d`, which then holds the master key and the admin credential).
fn the_trail_lists_verifies_and_names_an_edited_event(pg: Option<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let with_store = |args: &[&str]| -> Vec<String> {
        let mut out = Vec::new();
        for a in args {
            out.push((*a).to_owned());
            if *a == "d"
                && out.len() > 1
                && out[out.len() - 2] == "--data-dir"
                && let Some(url) = &pg
            {
                out.extend(["--database-url".to_owned(), url.clone()]);
            }
        }
        out
    };
    let ok = |args: &[&str], cwd: &std::path::Path| {
        let args = with_store(args);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };
    let run = |args: &[&str], cwd: &std::path::Path| {
        let args = with_store(args);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
    };
    ok(&["init", "--alg", "ES256", "--data-dir", "d"], d);
    let created: serde_json::Value = serde_json::from_str(&ok(
        &[
            "client",
            "create",
            "svc",
            "--scope",
            "secrets:read",
            "--data-dir",
            "d",
            "--json",
        ],
        d,
    ))
    .expect("json");
    let (id, secret) = (
        created["client_id"].as_str().expect("id").to_owned(),
        created["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
    );
    ok(&["keys", "rotate", "--data-dir", "d"], d);
    std::fs::write(d.join("c.toml"), "[audit]\nfile = \"audit.jsonl\"\n").expect("config");
    let server_args = with_store(&[
        "--config",
        "c.toml",
        "--data-dir",
        "d",
        "--replica-id",
        "r1",
    ]);
    let server = Server::start(
        &server_args.iter().map(String::as_str).collect::<Vec<_>>(),
        d,
    );
    let http = reqwest::blocking_client();
    let tok = http
        .post(format!("{}/oauth2/token", server.url))
        .basic(&id, &secret)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("token")
        .json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = http
        .get(format!("{}/v1/secrets/app/missing", server.url))
        .bearer(&tok)
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 404);
    // audit:read is needed for GET /v1/audit.
    let r = http
        .get(format!("{}/v1/audit", server.url))
        .bearer(&tok)
        .send()
        .expect("audit");
    assert_eq!(r.status().as_u16(), 403);
    assert!(server.terminate().success());

    let listed: serde_json::Value = serde_json::from_str(&ok(
        &[
            "audit",
            "list",
            "--since",
            "1h",
            "--actor",
            &format!("client:{id}"),
            "--action",
            "GET /v1/secrets",
            "--json",
            "--data-dir",
            "d",
        ],
        d,
    ))
    .expect("json");
    let events = listed["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{listed:#}");
    assert_eq!(events[0]["object"], "name=app/missing");
    assert_eq!(events[0]["result"], "failed");
    assert_eq!(events[0]["replica"], "r1");
    for action in [
        "init",
        "client.create",
        "keys.rotate",
        "config.accepted",
        "token.issue",
        "GET /v1/audit",
    ] {
        let l: serde_json::Value = serde_json::from_str(&ok(
            &[
                "audit",
                "list",
                "--action",
                action,
                "--json",
                "--data-dir",
                "d",
            ],
            d,
        ))
        .expect("json");
        assert_eq!(
            l["events"].as_array().map(Vec::len),
            Some(1),
            "{action}: {l:#}"
        );
    }

    let out = run(
        &[
            "audit",
            "verify",
            "--file",
            "audit.jsonl",
            "--data-dir",
            "d",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("checkpoint signature(s) verified"),
        "{}",
        text(&out)
    );

    // No client secret, admin secret or token in the store's trail or the stream.
    let admin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("d/admin-credential.json")).expect("cred"))
            .expect("json");
    let stream = std::fs::read_to_string(d.join("audit.jsonl")).expect("stream");
    let all = ok(&["audit", "list", "--json", "--data-dir", "d"], d);
    for s in [
        secret.as_str(),
        admin["client_secret"].as_str().expect("s"),
        tok.as_str(),
    ] {
        assert!(
            !stream.contains(s) && !all.contains(s),
            "a secret reached the trail"
        );
    }

    // An edited event is named.
    let url = pg
        .clone()
        .unwrap_or_else(|| castellan_store::sqlite_url(&d.join("d/castellan.db")));
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(castellan_store::testing::execute(
        &url,
        // Whatever r1#2 is (the writer's token count may take that seq), its result changes.
        "UPDATE audit_events SET result = CASE result WHEN 'allowed' THEN 'denied' ELSE 'allowed' END \
         WHERE replica_id = 'r1' AND seq = 2",
    ));
    let out = run(&["audit", "verify", "--data-dir", "d"], d);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("BROKEN   r1#2: event r1#2 was altered"),
        "{}",
        text(&out)
    );
}
