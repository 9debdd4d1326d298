//! Issue 2 (foundation): replicas share one key ring, fail-closed start, init races, master keys,
//! independent verification of tokens, and nothing secret in plaintext at rest.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn pg(test: &str) -> Option<String> {
    rt().block_on(castellan_store::testing::fresh_postgres_database(test))
}

fn jwks(url: &str) -> Vec<u8> {
    let r = reqwest::blocking_client()
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .expect("jwks");
    assert_eq!(r.status, 200);
    r.body
}

fn verify_with_jsonwebtoken(
    token: &str,
    jwks_bytes: &[u8],
    aud: &str,
    iss: &str,
) -> serde_json::Value {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(jwks_bytes).expect("jwks");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = set
        .find(header.kid.as_deref().expect("kid"))
        .unwrap_or_else(|| panic!("kid {:?} not in JWKS", header.kid));
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[iss]);
    jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
        &v,
    )
    .expect("token verifies")
    .claims
}

#[test]
fn three_replicas_on_one_postgres_share_one_key_ring() {
    let Some(db) = pg("three_replicas") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mk = master_key_file(dir.path(), "master.key");
    let mk = mk.to_str().expect("path");
    let common = ["--database-url", db.as_str(), "--master-key-file", mk];
    let mut init = vec!["init", "--admin-credential-out", "admin.json"];
    init.extend(common);
    ok(&init, dir.path());
    let mut create = vec!["client", "create", "svc", "--scope", "read", "--json"];
    create.extend(common);
    let (id, secret) = credential(&ok(&create, dir.path()));
    let (admin_id, admin_secret) =
        credential(&std::fs::read_to_string(dir.path().join("admin.json")).expect("admin"));

    let iss = "http://castellan.test";
    let mut args = vec!["--public-url", iss];
    args.extend(common);
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&args, dir.path())).collect();
    let bodies: Vec<Vec<u8>> = servers.iter().map(|s| jwks(&s.url)).collect();
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "JWKS bodies differ between replicas"
    );
    for s in &servers {
        let token = token(&s.url, &id, &secret);
        for other in &servers {
            let claims = verify_with_jsonwebtoken(&token, &jwks(&other.url), iss, iss);
            assert_eq!(claims["client_id"], id.as_str());
        }
    }
    let fingerprints: Vec<String> = servers
        .iter()
        .map(|s| {
            let admin = token(&s.url, &admin_id, &admin_secret);
            let r = reqwest::blocking_client()
                .get(format!("{}/v1/sys/status", s.url))
                .bearer(&admin)
                .send()
                .expect("status");
            assert_eq!(r.status, 200);
            let v = r.json();
            assert_eq!(v["store"], "postgres");
            v["keyring_fingerprint"].as_str().expect("fp").to_owned()
        })
        .collect();
    assert!(
        fingerprints.windows(2).all(|w| w[0] == w[1]),
        "{fingerprints:?}"
    );
    // The fingerprint is the SHA-256 of the JWKS bytes.
    let sha = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(&bodies[0])?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    assert!(String::from_utf8_lossy(&sha.stdout).starts_with(&fingerprints[0]));

    // Secrets live in the shared store too: written through one replica, read through the others.
    std::fs::write(dir.path().join("pw"), "shared-by-replicas").expect("value");
    ok(
        &[
            "secret",
            "put",
            "app/pw",
            "--file",
            "pw",
            "--server",
            &servers[0].url,
            "--credential",
            "admin.json",
        ],
        dir.path(),
    );
    for s in &servers[1..] {
        let got = ok(
            &[
                "secret",
                "get",
                "app/pw",
                "--server",
                &s.url,
                "--credential",
                "admin.json",
            ],
            dir.path(),
        );
        assert_eq!(got, "shared-by-replicas", "read through {}", s.url);
    }
}

#[test]
fn serve_without_a_key_ring_exits_2_and_names_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Embedded store.
    let out = run(
        &["serve", "--data-dir", "data", "--listen", "127.0.0.1:0"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("castellan init"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // PostgreSQL, initialized nowhere.
    let Some(db) = pg("serve_uninitialized") else {
        return;
    };
    let mk = master_key_file(dir.path(), "mk");
    let out = run(
        &[
            "serve",
            "--database-url",
            &db,
            "--master-key-file",
            mk.to_str().expect("p"),
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no key ring") && err.contains("castellan init"),
        "{err}"
    );
}

#[test]
fn five_concurrent_inits_on_postgres_leave_one_key_ring() {
    let Some(db) = pg("five_inits") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mk = master_key_file(dir.path(), "master.key");
    let procs: Vec<_> = (0..5)
        .map(|i| {
            Command::new(bin())
                .args([
                    "init",
                    "--database-url",
                    &db,
                    "--master-key-file",
                    mk.to_str().expect("p"),
                ])
                .args(["--admin-credential-out", &format!("par-admin-{i}.json")])
                .current_dir(dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn init")
        })
        .collect();
    let outputs: Vec<_> = procs
        .into_iter()
        .map(|p| p.wait_with_output().expect("wait"))
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let created = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).starts_with("initialized"))
        .count();
    let skipped = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).starts_with("already initialized"))
        .count();
    assert_eq!((created, skipped), (1, 4));
    let written = (0..5)
        .filter(|i| dir.path().join(format!("par-admin-{i}.json")).exists())
        .count();
    assert_eq!(written, 1, "exactly one admin credential is written");
    let keys = rt().block_on(async {
        let store = castellan_store::Store::connect(&db).await.expect("store");
        (
            store
                .published_signing_keys(i64::MAX / 2)
                .await
                .expect("keys")
                .len(),
            store.clients().await.expect("clients").len(),
        )
    });
    assert_eq!(keys, (1, 1), "one signing key, one admin client");
}

#[test]
fn dev_server_keeps_its_kid_across_restarts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&["--dev", "--data-dir", "data"], dir.path());
    let first = jwks(&s.url);
    let cred = dir.path().join("data/admin-credential.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cred)
            .expect("credential written")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let mk_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("data/master.key"))
            .expect("mk")
            .permissions(),
    );
    assert_eq!(mk_mode & 0o777, 0o600);
    // Issue 21 item 8: the data directory and the store in it are the owner's alone.
    for (path, want) in [("data", 0o700), ("data/castellan.db", 0o600)] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(path))
                .expect(path)
                .permissions(),
        );
        assert_eq!(mode & 0o777, want, "{path}");
    }
    let (id, secret) = credential(&std::fs::read_to_string(&cred).expect("read"));
    assert!(
        !s.log_text().contains(&secret),
        "the admin secret must not be logged"
    );
    assert!(
        s.log_text().contains("admin-credential.json"),
        "the log says where the credential is"
    );
    let status = s.terminate();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    let s = Server::start(&["--dev", "--data-dir", "data"], dir.path());
    assert_eq!(jwks(&s.url), first, "same key ring after restart");
    // The old admin credential still works: nothing was regenerated.
    token(&s.url, &id, &secret);
}

#[test]
fn a_different_master_key_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = master_key_file(dir.path(), "a.key");
    let b = master_key_file(dir.path(), "b.key");
    ok(
        &[
            "init",
            "--data-dir",
            "data",
            "--master-key-file",
            a.to_str().expect("p"),
        ],
        dir.path(),
    );
    let out = run(
        &[
            "serve",
            "--data-dir",
            "data",
            "--master-key-file",
            b.to_str().expect("p"),
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key does not match"), "{err}");
    // And init with the other key does not silently "succeed".
    let out = run(
        &[
            "init",
            "--data-dir",
            "data",
            "--master-key-file",
            b.to_str().expect("p"),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key does not match"));
    // A malformed key file is named.
    std::fs::write(dir.path().join("bad.key"), "not a key").expect("write");
    let out = run(
        &[
            "serve",
            "--data-dir",
            "data",
            "--master-key-file",
            "bad.key",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.key"));
}

fn python_has_pyjwt() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "PyJWT must be installed under CI (.ci/run installs it)"
        );
        eprintln!("skipping PyJWT checks: `pip install 'pyjwt[crypto]'` to run them");
    }
    ok
}

#[test]
fn tokens_verify_with_independent_implementations_for_every_alg() {
    let have_py = python_has_pyjwt();
    for (alg, key_type) in [
        ("RS256", "rsa-2048"),
        ("RS256", "rsa-3072"),
        ("ES256", "p-256"),
        ("EdDSA", "ed25519"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        ok(
            &[
                "init",
                "--data-dir",
                "d",
                "--alg",
                alg,
                "--key-type",
                key_type,
            ],
            dir.path(),
        );
        let (id, secret) = credential(&ok(
            &[
                "client",
                "create",
                "svc",
                "--scope",
                "s",
                "--audience",
                "api",
                "--json",
                "--data-dir",
                "d",
            ],
            dir.path(),
        ));
        let s = Server::start(&["--data-dir", "d"], dir.path());
        let t = token(&s.url, &id, &secret);
        let keys = jwks(&s.url);
        let v: serde_json::Value = serde_json::from_slice(&keys).expect("jwks");
        assert_eq!(v["keys"][0]["alg"], alg);
        let claims = verify_with_jsonwebtoken(&t, &keys, "api", &s.url);
        assert_eq!(claims["scope"], "s");
        if have_py {
            let jwks_path = dir.path().join("jwks.json");
            std::fs::write(&jwks_path, &keys).expect("write jwks");
            let out = Command::new("python3")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan/verify_jwt.py"))
                .args([jwks_path.to_str().expect("p"), &t, "api", &s.url])
                .output()
                .expect("python");
            assert!(
                out.status.success(),
                "PyJWT rejected the {alg} token: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let claims: serde_json::Value = serde_json::from_slice(&out.stdout).expect("claims");
            assert_eq!(claims["client_id"], id.as_str());
            // And PyJWT rejects the token once its signature is damaged.
            let mut bad = t.clone();
            let last = if bad.ends_with('A') { 'B' } else { 'A' };
            bad.pop();
            bad.push(last);
            let out = Command::new("python3")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan/verify_jwt.py"))
                .args([jwks_path.to_str().expect("p"), &bad, "api", &s.url])
                .output()
                .expect("python");
            assert!(
                !out.status.success(),
                "a damaged {alg} signature must not verify"
            );
        }
    }
    // A key type that does not fit the algorithm is a clear error.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &[
            "init",
            "--data-dir",
            "d",
            "--alg",
            "ES256",
            "--key-type",
            "rsa-2048",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot sign ES256"));
}

/// The PKCS#8 DER of every stored signing key, decrypted through the envelope (as the server does).
fn private_keys(url: &str, master_key: &Path) -> Vec<Vec<u8>> {
    rt().block_on(async {
        let store = castellan_store::Store::connect(url).await.expect("store");
        let mk = castellan_core::envelope::MasterKey::from_base64(
            &std::fs::read_to_string(master_key).expect("mk"),
        )
        .expect("mk");
        let mut out = Vec::new();
        for row in store
            .published_signing_keys(i64::MAX / 2)
            .await
            .expect("keys")
        {
            let dk = store
                .data_keys()
                .await
                .expect("dks")
                .into_iter()
                .find(|d| d.id == row.dek_id)
                .expect("dek");
            let dek = mk.unwrap(&dk.id, &dk.wrapped).expect("unwrap");
            out.push(
                dek.open(&format!("signing-key:{}", row.kid), &row.sealed_key)
                    .expect("open")
                    .to_vec(),
            );
        }
        out
    })
}

fn assert_absent(haystack: &[u8], ders: &[Vec<u8>], what: &str) {
    use base64::Engine;
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let hexed: String = der.iter().map(|b| format!("{b:02x}")).collect();
        // Any 32-byte window of the key is enough to call it leaked.
        assert!(
            !haystack
                .windows(32)
                .any(|w| w == &der[der.len() / 2..der.len() / 2 + 32]),
            "raw DER found in {what}"
        );
        let text = String::from_utf8_lossy(haystack);
        assert!(
            !text.contains(&b64[b64.len() / 2..b64.len() / 2 + 40]),
            "PEM/base64 key found in {what}"
        );
        assert!(
            !text.contains(&hexed[hexed.len() / 2..hexed.len() / 2 + 64]),
            "hex key found in {what}"
        );
    }
}

#[test]
fn private_keys_are_never_plaintext_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&["init", "--data-dir", "d", "--alg", "ES256"], dir.path());
    let ders = private_keys(
        &format!("sqlite://{}/d/castellan.db", dir.path().display()),
        &dir.path().join("d/master.key"),
    );
    assert_eq!(ders.len(), 1);
    let mut bytes = Vec::new();
    for f in ["castellan.db", "castellan.db-wal"] {
        if let Ok(b) = std::fs::read(dir.path().join("d").join(f)) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 4096, "read the database files");
    assert_absent(&bytes, &ders, "the SQLite files");

    let Some(db) = pg("plaintext_at_rest") else {
        return;
    };
    let mk = master_key_file(dir.path(), "pg.key");
    ok(
        &[
            "init",
            "--database-url",
            &db,
            "--master-key-file",
            mk.to_str().expect("p"),
        ],
        dir.path(),
    );
    let ders = private_keys(&db, &mk);
    let dump = rt().block_on(async {
        use sqlx_free::dump_tables;
        dump_tables(&db).await
    });
    assert!(dump.contains("signing_keys"), "dump covers the key table");
    assert_absent(dump.as_bytes(), &ders, "the PostgreSQL tables");
}

/// Every row of every Castellan table as text, through `psql` (bytea as hex, as PostgreSQL stores it).
mod sqlx_free {
    pub async fn dump_tables(url: &str) -> String {
        let mut out = String::new();
        for table in ["meta", "data_keys", "signing_keys", "clients"] {
            let o = std::process::Command::new("psql")
                .args([
                    url,
                    "-At",
                    "-c",
                    &format!("SELECT '{table}', row_to_json(t)::text FROM {table} t"),
                ])
                .output()
                .expect("psql");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            out.push_str(&String::from_utf8_lossy(&o.stdout));
        }
        out
    }
}

#[test]
fn secrets_never_reach_the_logs_and_remote_client_management_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(&["init", "--data-dir", "d"], dir.path());
    let s = Server::start(
        &[
            "--data-dir",
            "d",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ],
        dir.path(),
    );
    let cred = dir.path().join("d/admin-credential.json");
    let (admin_id, admin_secret) = credential(&std::fs::read_to_string(&cred).expect("cred"));
    let created = ok(
        &[
            "client",
            "create",
            "remote-svc",
            "--scope",
            "a",
            "--scope",
            "b",
            "--token-ttl",
            "5m",
            "--json",
            "--server",
            &s.url,
            "--credential",
            cred.to_str().expect("p"),
        ],
        dir.path(),
    );
    let (id, secret) = credential(&created);
    token(&s.url, &id, &secret);
    let c = reqwest::blocking_client();
    let r = c
        .post(format!("{}/oauth2/token", s.url))
        .basic(&id, "wrong-secret-value")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("req");
    assert_eq!(r.status, 401);
    let listed = ok(
        &[
            "client",
            "list",
            "--json",
            "--server",
            &s.url,
            "--credential",
            cred.to_str().expect("p"),
        ],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let names: Vec<&str> = v["clients"]
        .as_array()
        .expect("arr")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["admin", "remote-svc"]);
    assert!(!listed.contains(&secret));
    ok(
        &[
            "client",
            "delete",
            "remote-svc",
            "--server",
            &s.url,
            "--credential",
            cred.to_str().expect("p"),
        ],
        dir.path(),
    );
    let r = c
        .post(format!("{}/oauth2/token", s.url))
        .basic(&id, &secret)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("req");
    assert_eq!(r.status, 401, "a deleted client gets no token");
    let log = s.log_text();
    assert!(log.lines().all(|l| l.starts_with('{')), "JSON logs: {log}");
    for secret in [&secret, &admin_secret, &"wrong-secret-value".to_owned()] {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
    let _ = admin_id;
    // Local listing works while the server runs on the same store.
    let local = ok(&["client", "list", "--data-dir", "d"], dir.path());
    assert!(local.contains("admin"));
}

#[test]
fn config_check_names_the_bad_field_and_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../castellan.example.toml");
    ok(
        &["config", "check", example.to_str().expect("p")],
        dir.path(),
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "listen = \"127.0.0.1:1\"\n[tokens]\njwks_max_age = 300\n",
    )
    .expect("write");
    let out = run(&["config", "check", "bad.toml"], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jwks_max_age") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn token_command_prints_a_token_for_a_credential_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(&["init", "--data-dir", "d"], dir);
    let created = ok(
        &[
            "client",
            "create",
            "svc",
            "--scope",
            "read",
            "--scope",
            "write",
            "--audience",
            "api",
            "--json",
            "--data-dir",
            "d",
        ],
        dir,
    );
    std::fs::write(dir.join("svc.json"), &created).expect("write");
    let s = Server::start(&["--data-dir", "d"], dir);

    // `client create --json` names the token endpoint of the configured issuer (the default listen
    // address here, not this test's server): --server overrides it.
    let json: serde_json::Value = serde_json::from_str(&created).expect("JSON");
    assert_eq!(json["token_endpoint"], "http://127.0.0.1:8270/oauth2/token");

    // The token printed verifies against the server's JWKS (jsonwebtoken) with every scope.
    let printed = ok(
        &["token", "--credential", "svc.json", "--server", &s.url],
        dir,
    );
    let token = printed.trim();
    assert_eq!(printed, format!("{token}\n"), "only the token on stdout");
    let claims = verify_with_jsonwebtoken(token, &jwks(&s.url), "api", &s.url);
    assert_eq!(claims["scope"], "read write");

    // --scope narrows it; --json gives the whole answer.
    let answer: serde_json::Value = serde_json::from_str(&ok(
        &[
            "token",
            "--credential",
            "svc.json",
            "--server",
            &s.url,
            "--scope",
            "read",
            "--json",
        ],
        dir,
    ))
    .expect("json");
    assert_eq!(answer["scope"], "read");
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["expires_in"].as_i64().is_some_and(|n| n > 0));

    // The admin credential written by init names its token endpoint; pointed at this server, the
    // token opens /v1.
    let admin_path = dir.join("d/admin-credential.json");
    let mut admin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&admin_path).expect("read")).expect("json");
    assert!(admin["token_endpoint"].is_string());
    admin["token_endpoint"] = format!("{}/oauth2/token", s.url).into();
    std::fs::write(dir.join("admin.json"), admin.to_string()).expect("write");
    let admin_token = ok(&["token", "--credential", "admin.json"], dir);
    let r = reqwest::blocking_client()
        .get(format!("{}/v1/sys/status", s.url))
        .bearer(admin_token.trim())
        .send()
        .expect("status");
    assert_eq!(r.status, 200);

    // Refusals are errors that say why: a scope the client lacks, a wrong secret, a missing file, a
    // file that is not a credential.
    let fail = |args: &[&str], needle: &str| {
        let out = run(args, dir);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed something");
    };
    fail(
        &[
            "token",
            "--credential",
            "svc.json",
            "--server",
            &s.url,
            "--scope",
            "admin",
        ],
        "invalid_scope",
    );
    let mut wrong: serde_json::Value = serde_json::from_str(&created).expect("json");
    wrong["client_secret"] = "not-the-secret".into();
    std::fs::write(dir.join("wrong.json"), wrong.to_string()).expect("write");
    fail(
        &["token", "--credential", "wrong.json", "--server", &s.url],
        "invalid_client",
    );
    fail(
        &["token", "--credential", "nope.json", "--server", &s.url],
        "nope.json",
    );
    std::fs::write(dir.join("garbage.json"), "{\"hello\": 1}").expect("write");
    fail(
        &["token", "--credential", "garbage.json", "--server", &s.url],
        "not a credential file",
    );
}
