//! Issue 5: `castellan agent` end to end against a running server, a real Mosquitto broker on the files
//! it writes, failure behaviour, and `castellan dev up` twice on one directory; and secrets delivered
//! to files by the same agent.

use crate::pki_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::pki_support::mqtt::{self, Broker, Listener};
use crate::support::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// An initialized store, a client with scope pki:issue in `agent.json`, and a running server.
fn setup(dir: &Path) -> Server {
    setup_with_scopes(dir, &["pki:issue"])
}

/// An initialized store, a client with `scopes` in `agent.json`, and a running server.
/// [`setup`], then one agent run with the default `agent.toml` (the broker's and the app's sets).
fn delivered_once(dir: &Path) -> Server {
    let s = setup(dir);
    std::fs::write(dir.join("agent.toml"), agent_toml(&s.url, "")).expect("config");
    ok(&["agent", "--config", "agent.toml", "--once"], dir);
    s
}

fn setup_with_scopes(dir: &Path, scopes: &[&str]) -> Server {
    ok(&["init", "--data-dir", "d"], dir);
    // The names the agent's certificates carry (outside --dev a pki:issue client needs patterns).
    let mut args = vec![
        "client",
        "create",
        "agent",
        "--cert-name",
        "localhost",
        "--cert-name",
        "broker.local",
        "--cert-name",
        "127.0.0.1",
        "--cert-name",
        "app",
        "--scope",
    ];
    args.extend_from_slice(scopes);
    args.extend_from_slice(&["--json", "--data-dir", "d"]);
    let cred = ok(&args, dir);
    std::fs::write(dir.join("agent.json"), cred).expect("credential");
    Server::start(&["--data-dir", "d"], dir)
}

fn agent_toml(server: &str, extra: &str) -> String {
    format!(
        r#"server = "{server}"
credential_file = "agent.json"
status_file = "status.json"

[[certificate]]
name = "broker"
profile = "server"
common_name = "localhost"
dns = ["localhost"]
ip = ["127.0.0.1"]
ttl = "24h"
dir = "certs/broker"
uid = 456
[certificate.files.key]
mode = "0640"
gid = 123
{extra}
[[certificate]]
name = "app"
profile = "client"
common_name = "app"
ttl = "24h"
dir = "certs/app"
server_generated_key = true
"#
    )
}

fn status(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("status.json")).expect("status file"))
        .expect("status json")
}

#[test]
fn agent_writes_exact_modes_leaves_existing_dirs_alone_and_reuses_valid_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = setup(d);
    std::fs::create_dir_all(d.join("certs/broker")).expect("mkdir");
    std::fs::set_permissions(
        d.join("certs/broker"),
        std::fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    std::fs::write(d.join("agent.toml"), agent_toml(&s.url, "")).expect("config");

    let out = ok(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(
        out.contains("broker: issued") && out.contains("app: issued"),
        "{out}"
    );
    let b = d.join("certs/broker");
    assert_eq!(mode(&b), 0o750, "an existing directory keeps its mode");
    assert_eq!(
        mode(&d.join("certs/app")),
        0o755,
        "a missing directory is created 0755"
    );
    for f in ["cert.pem", "chain.pem", "ca-bundle.pem", "root.pem"] {
        assert_eq!(mode(&b.join(f)), 0o644, "{f}");
        assert_eq!(
            std::fs::metadata(b.join(f)).expect("meta").uid(),
            456,
            "{f} owner"
        );
    }
    assert_eq!(mode(&b.join("key.pem")), 0o640);
    let key_meta = std::fs::metadata(b.join("key.pem")).expect("meta");
    assert_eq!((key_meta.uid(), key_meta.gid()), (456, 123));
    assert_eq!(mode(&d.join("certs/app/key.pem")), 0o600);
    // OpenSSL agrees the set is sound, for the profile's purpose.
    let v = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            "certs/broker/ca-bundle.pem",
            "-purpose",
            "sslserver",
            "certs/broker/cert.pem",
        ])
        .current_dir(d)
        .output()
        .expect("openssl");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let st = status(d);
    assert!(st["certificates"]["broker"]["last_error"].is_null());
    assert!(
        st["certificates"]["broker"]["not_after"]
            .as_i64()
            .expect("not_after")
            > 0
    );

    // A second run (a restart) issues nothing: same serial, same bytes.
    let before = std::fs::read(b.join("cert.pem")).expect("read");
    let out = ok(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(
        out.contains("broker: valid files reused") && out.contains("app: valid files reused"),
        "{out}"
    );
    assert_eq!(std::fs::read(b.join("cert.pem")).expect("read"), before);
    // A wrong mode on disk is put right without re-issuing.
    std::fs::set_permissions(b.join("key.pem"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let out = ok(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(out.contains("broker: valid files reused"), "{out}");
    assert_eq!(mode(&b.join("key.pem")), 0o640);
    assert_eq!(mode(&b), 0o750);

    // A real broker on the agent's files accepts a client whose files the agent also wrote.
    let Some(exe) = mqtt::mosquitto("agent_written_files_work_with_mosquitto") else {
        return;
    };
    let broker = Broker::start(
        &exe,
        d,
        "agent-broker",
        &[Listener {
            certfile: b.join("chain.pem"),
            keyfile: b.join("key.pem"),
            cafile: b.join("root.pem"),
            crlfile: None,
        }],
    );
    let app = d.join("certs/app");
    let p = mqtt::mosquitto_pub(
        broker.port(),
        &app.join("root.pem"),
        &app.join("chain.pem"),
        &app.join("key.pem"),
        "agent/t",
        "hi",
    );
    assert!(
        p.status.success(),
        "mosquitto_pub: {}{}\n{}",
        String::from_utf8_lossy(&p.stdout),
        String::from_utf8_lossy(&p.stderr),
        broker.log_text()
    );
}

#[test]
fn a_short_ttl_renews_and_reloads_exactly_once_per_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = setup(d);
    let metrics_port = free_port();
    let config = format!(
        r#"server = "{}"
credential_file = "agent.json"
status_file = "status.json"
listen = "127.0.0.1:{}"
[[certificate]]
name = "short"
profile = "server"
dns = ["localhost"]
ttl = "8s"
dir = "certs/short"
reload = "openssl x509 -in certs/short/cert.pem -noout -serial >> reloads.log"
"#,
        s.url, metrics_port
    );
    std::fs::write(d.join("agent.toml"), config).expect("config");
    let mut child = Command::new(bin())
        .args(["agent", "--config", "agent.toml"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("agent.log")).expect("log"))
        .spawn()
        .expect("agent");
    std::thread::sleep(Duration::from_secs(3));
    let m = reqwest::blocking_client()
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .expect("metrics");
    let text = String::from_utf8_lossy(&m.body).into_owned();
    assert!(
        text.contains(
            "castellan_agent_certificate_expiry_timestamp_seconds{certificate=\"short\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("castellan_agent_last_pass_failed{certificate=\"short\"} 0"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(11));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "the daemon stops cleanly on SIGTERM");
    let reloads = std::fs::read_to_string(d.join("reloads.log")).unwrap_or_default();
    let lines: Vec<&str> = reloads.lines().collect();
    let issued = status(d)["certificates"]["short"]["issued"]
        .as_u64()
        .expect("issued");
    assert!(
        issued >= 2,
        "renewed at least once in 14 s with an 8 s lifetime (issued {issued})"
    );
    assert_eq!(
        lines.len() as u64,
        issued,
        "one reload per change: {lines:?}"
    );
    let unique: std::collections::HashSet<&&str> = lines.iter().collect();
    assert_eq!(
        unique.len(),
        lines.len(),
        "each reload saw a new certificate: {lines:?}"
    );
}

#[test]
fn an_unreachable_server_fails_once_clearly_and_backs_off_as_a_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("agent.json"),
        r#"{"client_id":"x","client_secret":"y"}"#,
    )
    .expect("cred");
    let dead = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(d.join("agent.toml"), agent_toml(&dead, "")).expect("config");
    let out = run(&["agent", "--config", "agent.toml", "--once"], d);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broker") && err.contains("cannot reach the Castellan server at"),
        "{err}"
    );
    assert!(!d.join("certs/broker").exists(), "nothing written");

    let mut child = Command::new(bin())
        .args(["agent", "--config", "agent.toml"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("agent.log")).expect("log"))
        .spawn()
        .expect("agent");
    std::thread::sleep(Duration::from_secs(5));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().expect("wait");
    let st = status(d);
    let failures = st["certificates"]["broker"]["consecutive_failures"]
        .as_u64()
        .expect("failures");
    // Back-off: 0.5–1 s, 1–2 s, 2–4 s … so 5 s hold a handful of attempts, not hundreds.
    assert!(
        (2..=6).contains(&failures),
        "backed off between retries ({failures} attempts in 5 s)"
    );
    assert!(
        st["certificates"]["broker"]["last_error"]
            .as_str()
            .expect("error")
            .contains("cannot reach")
    );
}

#[test]
fn a_bad_config_field_is_named_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("agent.toml"),
        agent_toml("http://127.0.0.1:1", "").replace(
            "ttl = \"24h\"\ndir = \"certs/broker\"",
            "tll = \"24h\"\ndir = \"certs/broker\"",
        ),
    )
    .expect("config");
    let out = run(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tll") && err.contains("line 11"), "{err}");
}

#[test]
fn a_write_that_fails_half_way_leaves_the_old_files_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = delivered_once(d);
    let b = d.join("certs/broker");
    let before: Vec<Vec<u8>> = ["cert.pem", "chain.pem", "key.pem"]
        .iter()
        .map(|f| std::fs::read(b.join(f)).expect("read"))
        .collect();
    // New names force a new certificate; the key now goes where no file can be created (under a
    // regular file), so the set is staged half way and then fails.
    std::fs::write(b.join("blocked"), "a file, not a directory").expect("blocker");
    let cfg = agent_toml(&s.url, "name = \"blocked/key.pem\"").replace(
        "dns = [\"localhost\"]",
        "dns = [\"localhost\", \"broker.local\"]",
    );
    std::fs::write(d.join("agent.toml"), cfg).expect("config");
    let out = run(&["agent", "--config", "agent.toml", "--once"], d);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the old files are intact"), "{err}");
    let after: Vec<Vec<u8>> = ["cert.pem", "chain.pem", "key.pem"]
        .iter()
        .map(|f| std::fs::read(b.join(f)).expect("read"))
        .collect();
    assert_eq!(before, after, "old files untouched");
    let leftovers = temp_files(&b);
    assert!(leftovers.is_empty(), "temp files removed: {leftovers:?}");
}

#[test]
fn dev_up_twice_reuses_the_store_and_certificates_and_dev_down_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n[[certificate]]\nname = \"broker\"\nprofile = \"server\"\ndns = [\"localhost\"]\nip = [\"127.0.0.1\"]\n\n[[certificate]]\nname = \"app\"\nprofile = \"client\"\ncommon_name = \"app\"\n"
    );
    std::fs::write(d.join("castellan-dev.toml"), cfg).expect("config");
    let first = ok(&["dev", "up"], d);
    assert!(
        first.contains("initialized the store") && first.contains("broker: issued"),
        "{first}"
    );
    let url = format!("http://127.0.0.1:{port}");
    let c = reqwest::blocking_client();
    let jwks1 = c
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .expect("server up")
        .body;
    let cert1 = std::fs::read(d.join("certs/broker/cert.pem")).expect("cert");
    let second = ok(&["dev", "up"], d);
    assert!(
        second.contains("reusing the store")
            && second.contains("broker: valid files reused")
            && second.contains("already running"),
        "{second}"
    );
    assert_eq!(
        std::fs::read(d.join("certs/broker/cert.pem")).expect("cert"),
        cert1
    );
    assert_eq!(
        c.get(format!("{url}/.well-known/jwks.json"))
            .send()
            .expect("server up")
            .body,
        jwks1
    );
    let down = ok(&["dev", "down"], d);
    assert!(down.contains("stopped"), "{down}");
    assert!(
        c.get(format!("{url}/healthz")).send().is_err(),
        "the server is stopped"
    );
    // And up again after down: same store, same key ring, certificates reused.
    let third = ok(&["dev", "up"], d);
    assert!(third.contains("valid files reused"), "{third}");
    assert_eq!(
        c.get(format!("{url}/.well-known/jwks.json"))
            .send()
            .expect("server up")
            .body,
        jwks1
    );
    ok(&["dev", "down"], d);
}

#[test]
fn a_ca_change_reaches_the_consumers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let _server = delivered_once(d);
    let bundle_before =
        std::fs::read_to_string(d.join("certs/broker/ca-bundle.pem")).expect("bundle");
    // The operator migrates to another intermediate CA; the running server picks it up on refresh.
    pki_support::import_openssl_ca(d);
    std::thread::sleep(Duration::from_secs(3));
    let out = ok(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(
        out.contains("broker: issued") && out.contains("app: issued"),
        "a CA change re-issues: {out}"
    );
    let bundle_after =
        std::fs::read_to_string(d.join("certs/broker/ca-bundle.pem")).expect("bundle");
    assert_ne!(bundle_before, bundle_after);
    let v = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            "openssl-root.pem",
            "-untrusted",
            "certs/broker/chain.pem",
            "certs/broker/cert.pem",
        ])
        .current_dir(d)
        .output()
        .expect("openssl");
    assert!(
        v.status.success(),
        "the new leaf chains to the imported CA's root: {}",
        String::from_utf8_lossy(&v.stdout)
    );
}

// ---- secrets --------------------------------------------------------------------------------------

/// `PUT /v1/secrets/{name}` with `value_base64`, as the admin; returns the version written.
fn put_secret(url: &str, admin_token: &str, name: &str, value: &[u8]) -> i64 {
    use base64::Engine;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let body = serde_json::json!({
        "value_base64": base64::engine::general_purpose::STANDARD.encode(value)
    });
    let (status, v) = rt.block_on(async {
        let r = ::reqwest::Client::new()
            .put(format!("{url}/v1/secrets/{name}"))
            .bearer_auth(admin_token)
            .json(&body)
            .send()
            .await
            .expect("PUT secret");
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.expect("JSON"))
    });
    assert_eq!(status, 200, "{v}");
    v["version"].as_i64().expect("version")
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).expect("meta").ino()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn the_agent_delivers_secrets_exactly_once_per_version_and_never_shows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = setup_with_scopes(d, &["pki:issue", "secrets:read"]);
    let (admin_id, admin_secret) =
        credential(&std::fs::read_to_string(d.join("d/admin-credential.json")).expect("admin"));
    let admin = token(&s.url, &admin_id, &admin_secret);
    // Binary values (a NUL byte, invalid UTF-8) with a marker to look for in every output.
    let value = |n: u32| -> Vec<u8> {
        [
            &[0x00, 0xff, 0x01][..],
            format!("agent-secret-marker-{n}-e7c1").as_bytes(),
        ]
        .concat()
    };
    assert_eq!(
        put_secret(&s.url, &admin, "mqtt/broker-password", &value(1)),
        1
    );

    // The secret goes into a directory that already exists with mode 0750.
    std::fs::create_dir_all(d.join("certs/broker")).expect("mkdir");
    std::fs::set_permissions(
        d.join("certs/broker"),
        std::fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    let secret_table = r#"
[[secret]]
name = "mqtt/broker-password"
path = "certs/broker/password"
mode = "0640"
reload = "echo reloaded >> reloads.log"
"#;
    let config = format!("{}{secret_table}", agent_toml(&s.url, ""));
    std::fs::write(d.join("agent.toml"), &config).expect("config");
    let mut outputs: Vec<String> = Vec::new();
    let mut agent_once = |expect_ok: bool| -> (String, String) {
        let out = run(&["agent", "--config", "agent.toml", "--once"], d);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(if expect_ok { 0 } else { 1 }),
            "{stdout}\n{stderr}"
        );
        outputs.push(stdout.clone());
        outputs.push(stderr.clone());
        outputs.push(std::fs::read_to_string(d.join("status.json")).expect("status file"));
        (stdout, stderr)
    };
    let pw = d.join("certs/broker/password");
    let reloads = d.join("reloads.log");

    let (out, _) = agent_once(true);
    assert!(
        out.contains("secret mqtt/broker-password: written (version 1)")
            && out.contains("broker: issued"),
        "{out}"
    );
    assert_eq!(std::fs::read(&pw).expect("read"), value(1));
    assert_eq!(
        mode(&pw),
        0o640,
        "the file's mode is exactly the one asked for"
    );
    assert_eq!(
        mode(&d.join("certs/broker")),
        0o750,
        "the directory is untouched"
    );
    assert_eq!(lines(&reloads), 1, "the reload command ran once");
    let st = status(d);
    assert_eq!(st["secrets"]["mqtt/broker-password"]["version"], 1);
    assert!(st["secrets"]["mqtt/broker-password"]["last_error"].is_null());

    // Again with no change: the file is not rewritten and nothing is reloaded.
    let ino = inode(&pw);
    let (out, _) = agent_once(true);
    assert!(
        out.contains("secret mqtt/broker-password: file up to date (version 1)"),
        "{out}"
    );
    assert_eq!(inode(&pw), ino, "not rewritten");
    assert_eq!(lines(&reloads), 1, "no reload without a change");

    // A new version: new bytes, same mode, one more reload.
    assert_eq!(
        put_secret(&s.url, &admin, "mqtt/broker-password", &value(2)),
        2
    );
    let (out, _) = agent_once(true);
    assert!(
        out.contains("secret mqtt/broker-password: written (version 2)"),
        "{out}"
    );
    assert_eq!(std::fs::read(&pw).expect("read"), value(2));
    assert_eq!(mode(&pw), 0o640);
    assert_eq!(mode(&d.join("certs/broker")), 0o750);
    assert_eq!(lines(&reloads), 2);

    // A [[secret]] naming a secret the server does not have: that entry fails (exit 1, like a failed
    // certificate), its existing file is left as it is, and every other entry is still delivered —
    // including a new version of the first secret in the same pass.
    let missing = d.join("certs/app/missing-password");
    std::fs::create_dir_all(d.join("certs/app")).expect("mkdir");
    std::fs::write(&missing, b"the old value stays").expect("old file");
    std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let missing_ino = inode(&missing);
    std::fs::write(
        d.join("agent.toml"),
        format!(
            "{config}\n[[secret]]\nname = \"mqtt/not-there\"\npath = \"certs/app/missing-password\"\nreload = \"echo missing >> missing-reloads.log\"\n"
        ),
    )
    .expect("config");
    assert_eq!(
        put_secret(&s.url, &admin, "mqtt/broker-password", &value(3)),
        3
    );
    let (out, err) = agent_once(false);
    assert!(
        err.contains("secret mqtt/not-there")
            && err.contains("secret `mqtt/not-there` does not exist on the server"),
        "{err}"
    );
    assert!(
        out.contains("secret mqtt/broker-password: written (version 3)")
            && out.contains("broker: valid files reused")
            && out.contains("app: valid files reused"),
        "{out}"
    );
    assert_eq!(std::fs::read(&pw).expect("read"), value(3));
    assert_eq!(lines(&reloads), 3);
    assert_eq!(
        std::fs::read(&missing).expect("read"),
        b"the old value stays"
    );
    assert_eq!(
        inode(&missing),
        missing_ino,
        "the missing secret's file is not replaced"
    );
    assert_eq!(mode(&missing), 0o644, "nor its mode changed");
    assert!(
        !d.join("missing-reloads.log").exists(),
        "no reload for a failed entry"
    );
    let st = status(d);
    let gone = &st["secrets"]["mqtt/not-there"];
    assert!(
        gone["last_error"]
            .as_str()
            .expect("error")
            .contains("does not exist on the server"),
        "{gone}"
    );
    assert_eq!(gone["consecutive_failures"], 1);
    assert_eq!(st["secrets"]["mqtt/broker-password"]["version"], 3);
    assert!(st["certificates"]["broker"]["last_error"].is_null());

    // No value, in any form, in anything the agent printed or wrote besides the secret's file.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for n in 1..=3 {
        let marker = format!("agent-secret-marker-{n}");
        let encoded = b64.encode(value(n));
        for text in &outputs {
            assert!(
                !text.contains(&marker) && !text.contains(&encoded),
                "secret {n} leaked into: {text}"
            );
        }
    }
    assert_eq!(
        outputs.len(),
        12,
        "four runs, each with stdout, stderr and a status file"
    );
}

#[test]
fn a_client_without_secrets_read_is_told_which_scope_it_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = setup(d);
    let config = format!(
        "{}\n[[secret]]\nname = \"db/password\"\npath = \"run/db-password\"\n",
        agent_toml(&s.url, "")
    );
    std::fs::write(d.join("agent.toml"), config).expect("config");
    let out = run(&["agent", "--config", "agent.toml", "--once"], d);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret db/password") && err.contains("secrets:read"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("broker: issued"),
        "certificates still delivered: {stdout}"
    );
    assert!(!d.join("run").exists(), "nothing written for the secret");
}

#[test]
fn dev_up_writes_the_secrets_it_lists_and_names_one_that_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n[[secret]]\nname = \"dev/db-password\"\npath = \"secrets/db-password\"\nmode = \"0640\"\n"
    );
    std::fs::write(d.join("castellan-dev.toml"), cfg).expect("config");
    // Not put yet: dev up says which secret is missing, writes no file and starts no server.
    let out = run(&["dev", "up"], d);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("dev/db-password"), "{said}");
    assert!(!d.join("secrets/db-password").exists());
    assert!(
        reqwest::blocking_client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .is_err(),
        "no server after a failed dev up"
    );
    let value = b"dev-\x00pw\n";
    let put = run_with_stdin(
        &[
            "secret",
            "put",
            "dev/db-password",
            "--data-dir",
            "castellan-data",
        ],
        d,
        value,
    );
    assert!(put.status.success());
    let up = ok(&["dev", "up"], d);
    assert!(
        up.contains("secret dev/db-password: written (version 1)"),
        "{up}"
    );
    assert!(!up.contains("dev-"), "the value is never printed: {up}");
    let file = d.join("secrets/db-password");
    assert_eq!(std::fs::read(&file).expect("secret file"), value);
    assert_eq!(mode(&file), 0o640);
    ok(&["dev", "down"], d);
}

// ---- findings of the security review ----------------------------------------------------------

/// `castellan ARGS` in `cwd`, killed (and the test failed) when it has not finished in 60 s.
fn run_within_a_minute(args: &[&str], cwd: &Path) -> (std::process::ExitStatus, String, String) {
    let (out, err) = (cwd.join("run.out"), cwd.join("run.err"));
    let mut child = command(args, cwd)
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(&err).expect("err"))
        .spawn()
        .expect("castellan");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("castellan {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status, read(&out), read(&err))
}

#[test]
fn a_symlink_or_a_fifo_in_place_of_a_delivered_file_is_replaced_never_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let _server = delivered_once(d);
    // A user who may write the directory replaces cert.pem with a symlink to a file of theirs (it
    // could be /etc/shadow) holding the very certificate, so the set still verifies.
    let b = d.join("certs/broker");
    let target = d.join("target.pem");
    std::fs::copy(b.join("cert.pem"), &target).expect("copy");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::remove_file(b.join("cert.pem")).expect("rm");
    std::os::unix::fs::symlink(&target, b.join("cert.pem")).expect("symlink");
    // And a FIFO in place of the app's key: reading it would wait for a writer forever.
    std::fs::remove_file(d.join("certs/app/key.pem")).expect("rm");
    let made = Command::new("mkfifo")
        .arg(d.join("certs/app/key.pem"))
        .status()
        .expect("mkfifo");
    assert!(made.success());

    let (status, out, err) = run_within_a_minute(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("broker: issued") && out.contains("app: issued"),
        "neither is reused: {out}"
    );
    let target_meta = std::fs::metadata(&target).expect("meta");
    assert_eq!(mode(&target), 0o600, "the link's target keeps its mode");
    assert_ne!(target_meta.uid(), 456, "and its owner");
    for f in [b.join("cert.pem"), d.join("certs/app/key.pem")] {
        let meta = std::fs::symlink_metadata(&f).expect("meta");
        assert!(meta.is_file(), "{} is a regular file again", f.display());
    }
    assert_eq!(mode(&b.join("cert.pem")), 0o644);
    assert_eq!(mode(&d.join("certs/app/key.pem")), 0o600);
}

#[test]
fn a_write_that_fails_after_some_renames_does_not_claim_the_old_files_are_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let s = delivered_once(d);
    // The key (written last) now goes where a non-empty directory is: the four certificate files
    // are renamed into place, then the key's rename fails.
    let b = d.join("certs/broker");
    std::fs::create_dir_all(b.join("keydir/inside")).expect("mkdir");
    std::fs::write(
        d.join("agent.toml"),
        agent_toml(&s.url, "name = \"keydir\""),
    )
    .expect("config");
    let out = run(&["agent", "--config", "agent.toml", "--once"], d);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broker") && err.contains("after 4 of 5 had been replaced"),
        "{err}"
    );
    assert!(!err.contains("intact"), "{err}");
    let leftovers = temp_files(&b);
    assert!(leftovers.is_empty(), "temp files removed: {leftovers:?}");
}

#[test]
fn init_that_cannot_write_the_admin_credential_commits_nothing_and_loses_no_root_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("taken")).expect("a directory where the credential should go");
    let out = run(
        &[
            "init",
            "--data-dir",
            "d",
            "--root-key-out",
            "offline",
            "--admin-credential-out",
            "taken",
        ],
        d,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("taken"), "{err}");
    // Nothing was committed: the next init initializes, and writes the root key.
    let out = ok(
        &[
            "init",
            "--data-dir",
            "d",
            "--root-key-out",
            "offline",
            "--admin-credential-out",
            "admin.json",
        ],
        d,
    );
    assert!(
        out.contains("initialized") && !out.contains("already"),
        "{out}"
    );
    let key = std::fs::read_to_string(d.join("offline/root-key.pem")).expect("root key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(mode(&d.join("offline/root-key.pem")), 0o600);
    assert_eq!(mode(&d.join("admin.json")), 0o600);
    for sub in ["offline", "d", "."] {
        let temps = temp_files(&d.join(sub));
        assert!(temps.is_empty(), "{sub}: {temps:?}");
    }
}

/// Issue 21 item 10: `--admin-credential-out -` prints the credential (and only it) on standard
/// output; a path that is not a regular file (the `/dev/stdout` symlink, a symlink to a file, a FIFO)
/// is refused before anything is committed, and never replaced.
#[test]
fn init_writes_the_credential_to_stdout_for_dash_and_never_replaces_a_non_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("real.json"), "keep").expect("file");
    std::os::unix::fs::symlink(d.join("real.json"), d.join("link.json")).expect("symlink");
    std::os::unix::fs::symlink("/dev/stdout", d.join("stdout")).expect("symlink");
    let fifo = d.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success(),
        "mkfifo"
    );
    for target in ["link.json", "stdout", "fifo"] {
        let out = run(
            &["init", "--data-dir", "d", "--admin-credential-out", target],
            d,
        );
        assert!(!out.status.success(), "{target} refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a regular file"), "{target}: {err}");
        assert!(
            std::fs::symlink_metadata(d.join(target))
                .expect("still there")
                .file_type()
                .is_symlink()
                || target == "fifo",
            "{target} is not replaced"
        );
    }
    assert!(
        std::fs::symlink_metadata(&fifo)
            .expect("fifo")
            .file_type()
            .is_fifo(),
        "the FIFO is still a FIFO"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("real.json")).expect("read"),
        "keep"
    );
    let out = run(
        &["init", "--data-dir", "d", "--admin-credential-out", "-"],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cred: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is the JSON alone");
    assert!(
        cred["client_id"].is_string() && cred["client_secret"].is_string(),
        "{cred}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("initialized"));
    assert!(!d.join("-").exists(), "no file named -");
}

#[test]
fn dev_down_never_signals_a_process_that_is_not_its_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("castellan-dev.toml"), "").expect("config");
    std::fs::create_dir(d.join("castellan-data")).expect("data dir");
    // A stale pid file whose pid now belongs to another program (after a reboot), whose command line
    // even says `serve --data-dir castellan-data`.
    let mut decoy = Command::new("sh")
        .args(["-c", "sleep 30; :", "serve", "--data-dir", "castellan-data"])
        .spawn()
        .expect("decoy");
    std::fs::write(
        d.join("castellan-data/castellan.pid"),
        decoy.id().to_string(),
    )
    .expect("pid file");
    let out = ok(&["dev", "down"], d);
    std::thread::sleep(Duration::from_millis(300));
    let alive = decoy.try_wait().expect("wait").is_none();
    let _ = decoy.kill();
    let _ = decoy.wait();
    assert!(alive, "dev down signalled an unrelated process: {out}");
    assert!(out.contains("no castellan server"), "{out}");
    assert!(
        !d.join("castellan-data/castellan.pid").exists(),
        "the stale pid file is removed"
    );
}

/// The names of the temp files (`*.tmp`) in `dir`.
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}
