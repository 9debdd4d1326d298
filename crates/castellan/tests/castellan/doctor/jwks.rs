//! `doctor jwks` against real `castellan serve` processes: two on different stores (divergence), two on
//! one store (none), and a token from one of them.

use super::doctor;
use crate::support::{Server, credential, jwks_kids, ok, token};

#[test]
fn replicas_on_different_stores_diverge_and_on_one_store_agree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(&["init", "--alg", "ES256", "--data-dir", "a"], dir);
    ok(&["init", "--alg", "ES256", "--data-dir", "b"], dir);
    let a1 = Server::start(&["--data-dir", "a"], dir);
    let a2 = Server::start(&["--data-dir", "a"], dir);
    let b = Server::start(&["--data-dir", "b"], dir);

    // Two processes on one store publish the same keys.
    let r = doctor(&["jwks", &a1.url, &a2.url], dir);
    r.expect_clean("two replicas on one store");
    r.expect("jwks-consistent", 0);

    // A process on a store of its own does not.
    let r = doctor(&["jwks", &a1.url, &b.url], dir);
    let f = r.expect("jwks-divergence", 1);
    let subject = f["subject"].as_str().expect("subject");
    let msg = f["message"].as_str().expect("message");
    assert!(
        subject.contains(&a1.url) && subject.contains(&b.url),
        "{subject}"
    );
    assert!(
        msg.contains(&a1.url) && msg.contains(&b.url),
        "names the replicas: {msg}"
    );
    let kid_a = jwks_kids(&a1.url);
    let kid_b = jwks_kids(&b.url);
    for kid in kid_a.iter().chain(&kid_b) {
        assert!(msg.contains(kid.as_str()), "names kid {kid}: {msg}");
    }

    // A token from store a: it verifies on a1 and a2, not on b.
    let (id, secret) = credential(&ok(
        &[
            "client",
            "create",
            "svc",
            "--scope",
            "read",
            "--json",
            "--data-dir",
            "a",
        ],
        dir,
    ));
    let t = token(&a1.url, &id, &secret);
    let r = doctor(&["jwks", &a1.url, &a2.url, &b.url, "--token", &t], dir);
    let v = r.get("token-verifies");
    let msg = v["message"].as_str().expect("m");
    assert!(msg.contains(&a1.url) && msg.contains(&a2.url), "{msg}");
    assert!(msg.contains(&format!("not against {}", b.url)), "{msg}");

    // Only b's JWKS: nobody publishes the token's kid.
    let r = doctor(&["jwks", &b.url, "--token", &t], dir);
    let f = r.expect("unknown-kid", 1);
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("a replica with a key of its own")
    );

    // The same token checked on its own against a's JWKS is fine.
    let r = doctor(
        &[
            "token",
            &t,
            "--jwks",
            &format!("{}/.well-known/jwks.json", a2.url),
        ],
        dir,
    );
    r.expect_clean("token against its own JWKS");

    // The bare doctor against a running server.
    let r = doctor(&["--server", &a1.url], dir);
    r.expect_clean("bare doctor --server");
    r.expect("keyring-ok", 0);
}

#[test]
fn an_unreachable_replica_is_a_finding() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = crate::support::free_port();
    let r = doctor(
        &[
            "jwks",
            &format!("http://127.0.0.1:{port}"),
            &format!("http://127.0.0.1:{port}/x"),
        ],
        tmp.path(),
    );
    r.expect("jwks-unreachable", 1);
    let r = doctor(
        &["--server", &format!("http://127.0.0.1:{port}")],
        tmp.path(),
    );
    r.expect("server-unreachable", 1);
}
