//! The HTTP server's limits (`[http]`), against the real binary over real sockets: clients that send
//! nothing, or too slowly, are cut off and cannot hold every connection; a slow request in progress
//! finishes when the server is stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until the server closes `conn` (end of stream or reset); panics after `within`.
fn closed_by_server(conn: &mut TcpStream, within: Duration) -> Vec<u8> {
    conn.set_read_timeout(Some(within)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server kept the connection open for {within:?}")
            }
            Err(_) => return got,
        }
    }
}

fn limited_server(dir: &std::path::Path, http: &str) -> Server {
    std::fs::write(dir.join("castellan.toml"), format!("[http]\n{http}\n")).expect("config");
    Server::start(
        &["--dev", "--data-dir", "data", "--config", "castellan.toml"],
        dir,
    )
}

#[test]
fn silent_and_slow_clients_are_cut_off_and_cannot_hold_every_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = limited_server(
        dir.path(),
        "header_timeout = \"2s\"\nrequest_timeout = \"2s\"\nmax_connections = 2",
    );
    let addr = s.url.trim_start_matches("http://").to_owned();

    // Both places taken: one client sends nothing, the other half a request line.
    let t0 = Instant::now();
    let mut silent = TcpStream::connect(&addr).expect("connect");
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .expect("write");
    // A third client waits in the accept queue until one of them is cut off, then is served.
    let resp = reqwest::blocking_client()
        .get(format!("{}/healthz", s.url))
        .send()
        .expect("the third client is served once a place frees");
    assert!(resp.status().is_success());
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "served after {:?}: more than max_connections were open at once",
        t0.elapsed()
    );
    closed_by_server(&mut silent, Duration::from_secs(10));
    closed_by_server(&mut slow, Duration::from_secs(10));

    // A kept-alive connection left idle is closed too, after its answer.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let got = closed_by_server(&mut idle, Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // A body that trickles in is cut off at request_timeout with a JSON 408.
    let mut trickle = TcpStream::connect(&addr).expect("connect");
    trickle
        .write_all(
            b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=",
        )
        .expect("write");
    let got = String::from_utf8_lossy(&closed_by_server(&mut trickle, Duration::from_secs(10)))
        .into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"code\":\"timeout\""), "{got}");

    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
}

#[test]
fn the_limits_are_checked_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (http, field) in [
        ("header_timeout = \"0s\"", "http.header_timeout"),
        ("request_timeout = \"2h\"", "http.request_timeout"),
        ("max_connections = 0", "http.max_connections"),
    ] {
        std::fs::write(dir.path().join("bad.toml"), format!("[http]\n{http}\n")).expect("config");
        let out = run(&["config", "check", "bad.toml"], dir.path());
        assert!(!out.status.success(), "{http} was accepted");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(field), "{http}: {text}");
    }
}

#[test]
fn a_request_in_progress_finishes_when_the_server_is_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&["--dev", "--data-dir", "data"], dir.path());
    let (id, secret) = credential(
        &std::fs::read_to_string(dir.path().join("data/admin-credential.json")).expect("cred"),
    );
    let token = token(&s.url, &id, &secret);
    // RSA-4096 keys take a while to generate, and at most two are generated at once: of three such
    // requests, some are still in progress at SIGTERM.
    let url = format!("{}/v1/pki/issue/server", s.url);
    let pending: Vec<_> = (0..3)
        .map(|i| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let name = format!("slow-{i}.internal");
                let body = serde_json::json!({"dns_names": [name], "key_type": "rsa-4096"});
                reqwest::blocking_client_waiting(Duration::from_secs(120))
                    .post(url)
                    .bearer(&token)
                    .json(&body)
                    .send()
                    .expect("answered")
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        pending.iter().any(|p| !p.is_finished()),
        "every request ended before the test could stop the server"
    );
    let status = s.terminate();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    for p in pending {
        let resp = p.join().expect("thread");
        assert_eq!(resp.status(), 200, "{:?}", resp.json());
        assert!(
            resp.json()["key_pem"]
                .as_str()
                .is_some_and(|k| k.contains("PRIVATE KEY"))
        );
    }
}
