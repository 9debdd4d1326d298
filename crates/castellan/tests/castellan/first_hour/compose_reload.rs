//! Item 11, run for real without Docker: the compose stack's broker reload and its paho app. In a PID
//! namespace of their own (`unshare --pid`, as `pid: service:agent` gives the agent and Mosquitto),
//! a real Mosquitto serves Castellan's broker set (given to the `mosquitto` user it drops to),
//! deploy/compose/app/app.py publishes and reads back over mTLS, the set is renewed, and
//! agent.toml's reload command makes Mosquitto serve the new certificate with no restart.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
}

fn serial(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_reload_command_makes_mosquitto_serve_a_renewed_certificate_and_the_paho_app_talks_over_mtls()
{
    let ready = have("mosquitto", "-h")
        && have("unshare", "--help")
        && Command::new("python3")
            .args(["-c", "import paho.mqtt.client"])
            .status()
            .is_ok_and(|s| s.success())
        && castellan_files::owner::user_id("mosquitto").is_ok();
    if !ready {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: needs mosquitto (with its user), unshare and paho-mqtt (.ci/run installs them)"
        );
        eprintln!("skipped: needs mosquitto, unshare and `pip install paho-mqtt`");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init"], d);
    let broker = [
        "pki",
        "issue",
        "--profile",
        "server",
        "--cn",
        "mosquitto",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--out",
        "broker",
        "--owner",
        "mosquitto:mosquitto",
    ];
    ok(&broker, d);
    ok(
        &[
            "pki",
            "issue",
            "--profile",
            "client",
            "--cn",
            "app",
            "--out",
            "app",
        ],
        d,
    );
    let first = serial(&d.join("broker/cert.pem"));
    let port = free_port();
    std::fs::write(
        d.join("mosquitto.conf"),
        format!(
            "listener {port} 127.0.0.1\ncertfile {0}/broker/chain.pem\nkeyfile {0}/broker/key.pem\n\
             cafile {0}/broker/root.pem\nrequire_certificate true\nuse_identity_as_username true\n",
            d.display()
        ),
    )
    .expect("conf");
    // The same reload command the compose agent runs.
    let agent = std::fs::read_to_string(repo().join("deploy/compose/agent.toml")).expect("agent");
    let reload = agent
        .lines()
        .find_map(|l| l.strip_prefix("reload = '"))
        .and_then(|r| r.strip_suffix('\''))
        .expect("reload = '...'");
    std::fs::write(d.join("reload.sh"), reload).expect("reload.sh");
    let app = repo().join("deploy/compose/app/app.py");
    let served = format!(
        "openssl s_client -connect 127.0.0.1:{port} -CAfile broker/root.pem -cert app/chain.pem \
         -key app/key.pem </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    let script = format!(
        r#"set -e
mosquitto -c mosquitto.conf > mosquitto.log 2>&1 &
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done
echo "served: $({served})"
ONCE=1 MQTT_HOST=127.0.0.1 MQTT_PORT={port} CERT_DIR=app python3 {app}
{bin} {renew} 2>/dev/null
sh reload.sh
sleep 1
echo "served: $({served})"
ONCE=1 MQTT_HOST=127.0.0.1 MQTT_PORT={port} CERT_DIR=app python3 {app}
kill %1
"#,
        app = app.display(),
        bin = bin(),
        renew = broker[..].join(" "),
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "bash", "-c", &script])
        .current_dir(d)
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(d.join("mosquitto.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = serial(&d.join("broker/cert.pem"));
    assert_ne!(first, second, "the set was renewed");
    let served: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("served: "))
        .collect();
    assert_eq!(served, [first.as_str(), second.as_str()], "{stdout}\n{log}");
    let round_trips = stdout
        .lines()
        .filter(|l| l.starts_with("published and received: hello over mTLS"))
        .count();
    assert_eq!(round_trips, 2, "{stdout}\n{log}");
    assert!(
        log.contains("Reloading config"),
        "Mosquitto got the SIGHUP: {log}"
    );
}
