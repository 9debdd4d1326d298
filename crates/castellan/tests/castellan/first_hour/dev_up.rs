//! Item 6: `dev up` waits (bounded) for its own server's /readyz, reports a server that failed to
//! start (a port taken by another server, or by a listener that never answers, is said at once);
//! `--listen` and `--data-dir`; a secret not put yet is named with how to put it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// `castellan dev up ARGS` in `cwd`, failed when it takes more than 60 s: (status, stdout, stderr).
fn dev_up(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = command(&[&["dev", "up"][..], args].concat(), cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dev up");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dev up hung for 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pid_alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[test]
fn a_port_held_by_a_listener_that_never_answers_is_said_at_once_not_waited_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // The kernel completes connections to it (the backlog), and nothing ever answers.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let (ok, stdout, stderr) = dev_up(&["--listen", &addr], d, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!("{addr} is already in use")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen"), "{stderr}");
    assert!(!stdout.contains("running"), "{stdout}");
    assert!(!d.join("castellan-data/castellan.pid").exists());
}

#[test]
fn a_port_taken_by_another_castellan_is_not_reported_as_this_one_running() {
    let other = tempfile::tempdir().expect("tempdir");
    ok(&["init"], other.path());
    let server = Server::start(&[], other.path());
    let addr = server.url.trim_start_matches("http://").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, stdout, stderr) = dev_up(&["--listen", &addr], dir.path(), &[]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(!stdout.contains("castellan is running"), "{stdout}");
    drop(server);
}

#[test]
fn a_server_that_exits_at_start_is_reported_with_its_own_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    // The server reads this from its environment and refuses to start.
    let (ok, stdout, stderr) = dev_up(&["--listen", &addr], d, &[("CASTELLAN_TLS_MODE", "files")]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("the server failed to start"), "{stderr}");
    assert!(
        stderr.contains("needs both cert_file and key_file"),
        "{stderr}"
    );
    assert!(!stdout.contains("castellan is running"), "{stdout}");
    assert!(
        !d.join("castellan-data/castellan.pid").exists(),
        "no pid of a dead server kept"
    );
}

#[test]
fn listen_and_data_dir_flags_place_the_server_and_its_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    let (ok, stdout, stderr) = dev_up(&["--listen", &addr, "--data-dir", "elsewhere"], d, &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("castellan is running at http://{addr}")),
        "{stdout}"
    );
    let pid = std::fs::read_to_string(d.join("elsewhere/castellan.pid")).expect("pid file");
    assert!(pid_alive(&pid), "the pid printed is a live server");
    assert!(stdout.contains(&format!("pid {}", pid.trim())), "{stdout}");
    assert!(
        !d.join("castellan-data").exists(),
        "the store is in elsewhere/"
    );
    let r = reqwest::blocking_client()
        .get(format!("http://{addr}/readyz"))
        .send()
        .expect("readyz");
    assert_eq!(r.status, 200);
    assert!(
        stdout.contains("castellan dev down --data-dir elsewhere"),
        "{stdout}"
    );
    let down = ok_down(d);
    assert!(down.contains("stopped"), "{down}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(&pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(&pid), "dev down --data-dir stopped it");
}

fn ok_down(d: &Path) -> String {
    ok(&["dev", "down", "--data-dir", "elsewhere"], d)
}

#[test]
fn a_secret_not_put_yet_is_named_with_where_and_how_to_put_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cfg = format!(
        "listen = \"127.0.0.1:{}\"\n[[secret]]\nname = \"mqtt/pw\"\npath = \"secrets/pw\"\n",
        free_port()
    );
    std::fs::write(d.join("castellan-dev.toml"), cfg).expect("config");
    let (ok, _, stderr) = dev_up(&[], d, &[]);
    assert!(!ok);
    assert!(
        !stderr.contains("on the server"),
        "no server runs yet: {stderr}"
    );
    assert!(
        stderr.contains("not in the store in castellan-data yet"),
        "{stderr}"
    );
    assert!(
        stderr.contains("castellan secret put mqtt/pw --data-dir castellan-data"),
        "{stderr}"
    );
}
