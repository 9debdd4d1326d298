//! The file judgments the doctor's probes rely on: read failures, key detection, several files at once.

use std::io::ErrorKind;

use super::*;
use crate::doctor::Severity;

#[test]
fn a_read_failure_names_its_cause() {
    let f = read_failure("/etc/x.pem", ErrorKind::NotFound, "No such file");
    assert_eq!(f.code, codes::FILE_MISSING);
    assert_eq!(f.subject, "/etc/x.pem");
    assert_eq!(f.severity, Severity::Error);
    let f = read_failure("/etc/x.pem", ErrorKind::PermissionDenied, "denied");
    assert_eq!(f.code, codes::NOT_READABLE);
    assert!(
        f.fix.contains("castellan doctor files /etc/x.pem"),
        "{}",
        f.fix
    );
    let f = read_failure("/etc", ErrorKind::IsADirectory, "is a directory");
    assert!(f.message.contains("is a directory, not a file"));
    let f = read_failure(
        "/etc/x.pem",
        ErrorKind::InvalidData,
        "stream did not contain UTF-8",
    );
    assert_eq!(f.code, codes::NOT_READABLE);
    assert!(
        f.message.ends_with("stream did not contain UTF-8"),
        "{}",
        f.message
    );
}

#[test]
fn a_key_is_known_by_its_contents_else_by_its_name() {
    let key = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    assert!(is_key_file("cert.pem", Some(key)));
    assert!(!is_key_file(
        "server-key.pem",
        Some(b"-----BEGIN CERTIFICATE-----\n")
    ));
    assert!(is_key_file("/etc/tls/Server-KEY.pem", None));
    assert!(is_key_file("client.key", None));
    assert!(!is_key_file("/etc/tls/cert.pem", None));
    assert!(!is_key_file("keys.txt", None));
}

fn stat(mode: u32, is_dir: bool) -> Stat {
    Stat {
        mode,
        uid: 0,
        gid: 0,
        is_dir,
        acl: None,
    }
}

#[test]
fn a_blocked_directory_is_named_once_for_all_files_below_it() {
    let who = Identity {
        uid: 1000,
        gids: vec![1000],
        label: "uid 1000".to_owned(),
    };
    let parents = vec![
        ("/".to_owned(), stat(0o755, true)),
        ("/srv".to_owned(), stat(0o700, true)),
    ];
    let file = |p: &str| FileFacts {
        path: p.to_owned(),
        parents: parents.clone(),
        found: Found::Exists(stat(0o644, false)),
        is_key: false,
    };
    let out = check_files(&[file("/srv/a.pem"), file("/srv/b.pem")], &who, None);
    let blocked: Vec<_> = out
        .iter()
        .filter(|f| f.code == codes::DIR_NOT_SEARCHABLE)
        .collect();
    assert_eq!(blocked.len(), 1, "{out:?}");
    assert_eq!(blocked[0].subject, "/srv");
    assert!(out.iter().all(|f| f.code != codes::FILE_OK), "{out:?}");
}
