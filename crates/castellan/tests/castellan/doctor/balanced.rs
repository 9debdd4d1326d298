//! One address in front of many replicas (issue 23, doctor item 1): a round-robin proxy in front of two
//! `castellan serve` processes on separate stores (the founding incident: about half the requests
//! fail), and in front of three healthy replicas on one store (no false alarm).

use super::doctor;
use crate::support::proxy::{RoundRobin, host_port};
use crate::support::{Server, credential, ok, token};

fn client_token(dir: &std::path::Path, data_dir: &str, url: &str) -> String {
    let (id, secret) = credential(&ok(
        &[
            "client",
            "create",
            "svc",
            "--scope",
            "read",
            "--json",
            "--data-dir",
            data_dir,
        ],
        dir,
    ));
    token(url, &id, &secret)
}

#[test]
fn issue_23_one_url_before_replicas_on_two_stores_shows_two_key_sets_and_half_verifying() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(&["init", "--alg", "ES256", "--data-dir", "a"], dir);
    ok(&["init", "--alg", "ES256", "--data-dir", "b"], dir);
    let a = Server::start(&["--data-dir", "a"], dir);
    let b = Server::start(&["--data-dir", "b"], dir);
    let lb = RoundRobin::start(vec![host_port(&a.url), host_port(&b.url)]);

    // Default: 10 fetches, each over a fresh connection (the proxy sees 10 connections).
    let r = doctor(&["jwks", &lb.url], dir);
    let f = r.expect("jwks-divergence", 1);
    let msg = f["message"].as_str().expect("message");
    assert!(msg.contains("2 distinct key sets in 10 fetches"), "{msg}");
    assert!(msg.contains("in 5 fetch(es)"), "{msg}");
    assert!(
        lb.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 10,
        "fresh connections"
    );

    // The flag sets how many.
    let r = doctor(&["jwks", &lb.url, "--samples", "4"], dir);
    let msg = r.expect("jwks-divergence", 1)["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("in 4 fetches"), "{msg}");

    // A token from store a verifies in half of the fetches.
    let t = client_token(dir, "a", &a.url);
    let r = doctor(&["jwks", &lb.url, "--token", &t], dir);
    let msg = r.expect("token-verifies-partly", 1)["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("5 of 10 fetches (50%)"), "{msg}");
    let r = doctor(&["token", &t, "--jwks", &lb.url], dir);
    let msg = r.expect("token-verifies-partly", 1)["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("5 of 10 fetches (50%)"), "{msg}");
    let r = doctor(&["token", &t, "--jwks", &lb.url, "--samples", "6"], dir);
    let msg = r.expect("token-verifies-partly", 1)["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("3 of 6 fetches (50%)"), "{msg}");

    // One replica down behind the address: a warning with the share, not a false "consistent".
    drop(b);
    let r = doctor(&["jwks", &lb.url], dir);
    let w = r.get("jwks-unreachable");
    assert_eq!(w["severity"], "warning", "{}", r.dump());
    assert!(
        w["message"]
            .as_str()
            .expect("m")
            .contains("5 of 10 fetches (50%)"),
        "{}",
        r.dump()
    );
}

#[test]
fn issue_23_three_healthy_replicas_behind_one_url_are_clean() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(&["init", "--alg", "ES256", "--data-dir", "a"], dir);
    let replicas: Vec<Server> = (0..3)
        .map(|_| Server::start(&["--data-dir", "a"], dir))
        .collect();
    let lb = RoundRobin::start(replicas.iter().map(|s| host_port(&s.url)).collect());

    let r = doctor(&["jwks", &lb.url], dir);
    r.expect_clean("three replicas on one store behind a proxy");
    let msg = r.get("jwks-consistent")["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("all 10 fetches"), "{msg}");

    let t = client_token(dir, "a", &replicas[0].url);
    let r = doctor(&["token", &t, "--jwks", &lb.url], dir);
    r.expect_clean("token behind a proxy");
    let msg = r.get("token-verifies")["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("10 of 10 fetches (100%)"), "{msg}");
    let r = doctor(&["jwks", &lb.url, "--token", &t], dir);
    r.expect_clean("jwks --token behind a proxy");
}
