//! `castellan secret`: on the store directly (while a server runs on it) and through `--server`, with
//! scopes, check-and-set, exact bytes in and out, and `--out` files that leave their directory alone.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};

use crate::support::*;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn secrets_round_trip_on_the_store_and_through_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d", "--alg", "ES256"], d);
    let server = Server::start(&["--data-dir", "d"], d);
    let writer = ok(
        &[
            "client",
            "create",
            "writer",
            "--scope",
            "secrets:write",
            "--scope",
            "secrets:read",
            "--data-dir",
            "d",
            "--json",
        ],
        d,
    );
    std::fs::write(d.join("writer.json"), &writer).expect("credential");
    let reader = ok(
        &[
            "client",
            "create",
            "reader",
            "--scope",
            "secrets:read",
            "--data-dir",
            "d",
            "--json",
        ],
        d,
    );
    std::fs::write(d.join("reader.json"), &reader).expect("credential");

    // Written on the store directly while the server runs: bytes exactly as given, a NUL and a
    // trailing newline included.
    let value: &[u8] = b"pa\x00ss\xffword-7f3a9c\n";
    let out = run_with_stdin(
        &["secret", "put", "mqtt/broker", "--data-dir", "d"],
        d,
        value,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("version 1 of secret mqtt/broker"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("7f3a9c"), "put never echoes the value");

    // Read back through the server with the reader's credential: the exact bytes on stdout.
    let remote = [
        "--server",
        server.url.as_str(),
        "--credential",
        "reader.json",
    ];
    let out = run(
        &[&["secret", "get", "mqtt/broker"][..], &remote].concat(),
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, value);

    // The reader may not write: the server's 403 is the error, exit 1, nothing written.
    let out = run_with_stdin(
        &[&["secret", "put", "mqtt/broker"][..], &remote].concat(),
        d,
        b"x",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("403") && text(&out).contains("secrets:write"),
        "{}",
        text(&out)
    );

    // Through the server with the writer: --file, and check-and-set.
    std::fs::write(d.join("v2.txt"), "second-value").expect("file");
    let wremote = [
        "--server",
        server.url.as_str(),
        "--credential",
        "writer.json",
    ];
    let put2 = [
        &[
            "secret",
            "put",
            "mqtt/broker",
            "--file",
            "v2.txt",
            "--cas",
            "1",
            "--json",
        ][..],
        &wremote,
    ]
    .concat();
    let out = run(&put2, d);
    assert!(out.status.success(), "{}", text(&out));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(meta["version"], 2);
    let out = run(&put2, d); // cas 1 again: stale now
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("409") && text(&out).contains("version 2"),
        "{}",
        text(&out)
    );

    // The old version is still there; the newest is the second.
    let out = run(
        &[
            "secret",
            "get",
            "mqtt/broker",
            "--version",
            "1",
            "--data-dir",
            "d",
        ],
        d,
    );
    assert_eq!(out.stdout, value, "{}", text(&out));
    assert_eq!(
        ok(&["secret", "get", "mqtt/broker", "--data-dir", "d"], d),
        "second-value"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        &["secret", "get", "mqtt/broker", "--json", "--data-dir", "d"],
        d,
    ))
    .expect("json");
    assert_eq!(json["value"], "second-value");
    assert_eq!(json["version"], 2);

    // --out into an existing 0750 directory: the file gets the mode asked for, the directory keeps its own.
    let out_dir = d.join("run");
    std::fs::create_dir(&out_dir).expect("dir");
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let out = run(
        &[
            &[
                "secret",
                "get",
                "mqtt/broker",
                "--version",
                "1",
                "--out",
                "run/pw",
                "--mode",
                "0640",
            ][..],
            &remote,
        ]
        .concat(),
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "the value goes to the file only");
    assert_eq!(std::fs::read(out_dir.join("pw")).expect("read"), value);
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&out_dir.join("pw")), 0o640);
    assert_eq!(mode(&out_dir), 0o750);
    // Default mode 0600.
    ok(
        &[
            "secret",
            "get",
            "mqtt/broker",
            "--out",
            "run/pw2",
            "--data-dir",
            "d",
        ],
        d,
    );
    assert_eq!(mode(&out_dir.join("pw2")), 0o600);

    // The list names the secret and its versions; never a value.
    let list = ok(&[&["secret", "list", "--json"][..], &remote].concat(), d);
    let v: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert_eq!(v["secrets"][0]["name"], "mqtt/broker");
    assert_eq!(v["secrets"][0]["version"], 2);
    assert_eq!(v["secrets"][0]["versions"], 2);
    let table = ok(&["secret", "list", "--data-dir", "d"], d);
    assert!(
        table.contains("mqtt/broker") && !table.contains("second-value"),
        "{table}"
    );

    // The server's log names who read and wrote what (the audit trail), never the value.
    let log = server.log_text();
    let (reader_id, _) = credential(&reader);
    let (writer_id, _) = credential(&writer);
    assert!(
        log.lines().any(|l| l.contains("read a secret")
            && l.contains("mqtt/broker")
            && l.contains(&reader_id)),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("wrote a secret") && l.contains(&writer_id)),
        "{log}"
    );

    // No value in the clear in the store's files or the server's log.
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(d.join("d"))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.push(server.log.clone());
    for f in files {
        let bytes = std::fs::read(&f).expect("read");
        for needle in [&b"7f3a9c"[..], b"second-value"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext in {}",
                f.display()
            );
        }
    }

    // Delete: every version gone, on both paths.
    let out = run(
        &[&["secret", "delete", "mqtt/broker"][..], &remote].concat(),
        d,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the reader may not delete: {}",
        text(&out)
    );
    ok(
        &[&["secret", "delete", "mqtt/broker"][..], &wremote].concat(),
        d,
    );
    let out = run(
        &[
            "secret",
            "get",
            "mqtt/broker",
            "--version",
            "1",
            "--data-dir",
            "d",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not found"), "{}", text(&out));
}

#[test]
fn bad_secret_input_exits_1_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d", "--alg", "ES256"], d);
    let too_big = vec![b'x'; 32 * 1024 + 1];
    let cases: [(&[&str], &[u8], &str); 4] = [
        (
            &["secret", "put", "a/../b", "--data-dir", "d"],
            b"v",
            "invalid secret name",
        ),
        (
            &["secret", "put", "ok", "--data-dir", "d"],
            b"",
            "1 to 32768 bytes",
        ),
        (
            &["secret", "put", "ok", "--data-dir", "d"],
            &too_big,
            "1 to 32768 bytes",
        ),
        (
            &["secret", "put", "ok", "--cas", "3", "--data-dir", "d"],
            b"v",
            "at version 0, not 3",
        ),
    ];
    for (args, input, want) in cases {
        let out = run_with_stdin(args, d, input);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
    let out = run(&["secret", "get", "ok", "--data-dir", "d"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("secret ok not found"), "{}", text(&out));
    let out = run(
        &["secret", "get", "ok", "--mode", "0640", "--data-dir", "d"],
        d,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--mode without --out is a usage error"
    );
    assert_eq!(
        ok(&["secret", "list", "--data-dir", "d"], d).trim(),
        "no secrets"
    );
}

/// Writers in separate processes (CLIs on one store, as replicas would be) never lose a write: each
/// gets its own version.
#[test]
fn concurrent_cli_writers_each_get_their_own_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d", "--alg", "ES256"], d);
    let children: Vec<_> = (0..8)
        .map(|i| {
            std::fs::write(d.join(format!("v{i}")), format!("value-{i}")).expect("file");
            let file = format!("v{i}");
            command(
                &[
                    "secret",
                    "put",
                    "shared",
                    "--file",
                    &file,
                    "--json",
                    "--data-dir",
                    "d",
                ],
                d,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
        })
        .collect();
    let mut versions: Vec<i64> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wait");
            assert!(out.status.success(), "{}", text(&out));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["version"]
                .as_i64()
                .expect("version")
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
}

#[test]
fn a_generated_value_is_stored_but_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d", "--alg", "ES256"], d);
    let put = [
        "secret",
        "put",
        "app/db-password",
        "--generate",
        "24",
        "--data-dir",
        "d",
    ];
    let first_out = ok(&put, d);
    let first = ok(&["secret", "get", "app/db-password", "--data-dir", "d"], d);
    assert_eq!(first.len(), 32, "24 bytes as base64url: {first:?}");
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert!(
        !first_out.contains(&first),
        "put printed the value: {first_out}"
    );
    let second_out = ok(&put, d);
    assert!(second_out.contains("version 2"), "{second_out}");
    let second = ok(&["secret", "get", "app/db-password", "--data-dir", "d"], d);
    assert_ne!(first, second, "each generation is new");
    for bad in [
        &["secret", "put", "x", "--generate", "8", "--data-dir", "d"][..],
        &[
            "secret",
            "put",
            "x",
            "--generate",
            "16",
            "--file",
            "f",
            "--data-dir",
            "d",
        ][..],
    ] {
        let out = run(bad, d);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }
}
