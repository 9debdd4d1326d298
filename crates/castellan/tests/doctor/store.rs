//! The bare `castellan doctor` on a PostgreSQL store: sound, the wrong master key, a database that was
//! never initialized, and no database at all.

use crate::{doctor, support};

fn fresh_database(name: &str) -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(castellan_store::testing::fresh_postgres_database(name))
}

#[test]
fn bare_doctor_on_postgres() {
    let (Some(url), Some(empty)) = (
        fresh_database("doctor_bare_pg"),
        fresh_database("doctor_bare_pg_empty"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let key = support::master_key_file(dir, "master.key");
    let other = support::master_key_file(dir, "other.key");
    let key = key.to_str().expect("path");
    let other = other.to_str().expect("path");
    let out = support::run(
        &["init", "--database-url", &url, "--master-key-file", key],
        dir,
    );
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(dir.join("value"), "doctor-sees-no-plaintext").expect("value");
    support::ok(
        &[
            "secret",
            "put",
            "app/db",
            "--file",
            "value",
            "--database-url",
            &url,
            "--master-key-file",
            key,
        ],
        dir,
    );

    let r = doctor(&["--database-url", &url, "--master-key-file", key], dir);
    r.expect_clean("bare doctor on an initialized PostgreSQL store");
    r.expect("keyring-ok", 0);
    r.expect("secrets-ok", 0);

    // A sealed value altered in the database (one byte of its ciphertext): named, without its value.
    let psql = std::process::Command::new("psql")
        .args([&url, "-qc", "UPDATE secrets SET sealed_value = set_byte(sealed_value, 20, get_byte(sealed_value, 20) # 1)"])
        .output()
        .expect("psql");
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let r = doctor(&["--database-url", &url, "--master-key-file", key], dir);
    let f = r.expect("secret-unreadable", 1);
    assert_eq!(f["subject"], "secret app/db", "{}", r.dump());
    assert!(!r.dump().contains("doctor-sees"), "{}", r.dump());
    assert!(!r.has("secrets-ok"));
    assert!(
        r.get("keyring-ok")["subject"]
            .as_str()
            .is_some_and(|s| s.contains("PostgreSQL")),
        "{}",
        r.dump()
    );

    // Another replica's master key: the key ring cannot be opened, and the doctor says which file.
    let r = doctor(&["--database-url", &url, "--master-key-file", other], dir);
    r.expect("keyring-not-loaded", 1);

    // A database nobody ran `castellan init` against.
    let r = doctor(&["--database-url", &empty, "--master-key-file", key], dir);
    let f = r.expect("store-not-initialized", 1);
    assert!(
        f["fix"]
            .as_str()
            .is_some_and(|s| s.contains("castellan init")),
        "{f}"
    );

    // Nothing listens there.
    let dead = format!(
        "postgres://postgres@127.0.0.1:{}/nothing",
        support::free_port()
    );
    let r = doctor(&["--database-url", &dead, "--master-key-file", key], dir);
    r.expect("store-unreachable", 1);
}
