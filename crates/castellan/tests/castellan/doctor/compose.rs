//! `doctor compose` (issue 23, doctor item 3): the project's own deploy/compose is clean, and a
//! Compose file with each mistake gets the finding that names it, with the fix.

use std::path::{Path, PathBuf};

use super::doctor;

/// The project's Compose file.
fn project_compose() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose/docker-compose.yml")
}

const AGENT_TOML: &str = r#"
server = "https://castellan:8270"
ca_file = "/ca/root.pem"
credential_file = "/secrets/agent.json"

[[certificate]]
name = "broker"
profile = "server"
dns = ["mosquitto"]
dir = "/certs/broker"
uid = 1883
gid = 1883

[[certificate]]
name = "app"
profile = "client"
common_name = "app"
dir = "/certs/app"
"#;

const MOSQUITTO_CONF: &str = "listener 8883\n# keyfile /nowhere/old.key\ncertfile /certs/broker/chain.pem\nkeyfile /certs/broker/key.pem\ncafile /certs/broker/root.pem\nrequire_certificate true\n";

/// A small stack like deploy/compose: init writes the CA into `ca`, the agent (`--once`) writes the
/// broker's and the app's sets into `certs`, Mosquitto and a client read them.
const GOOD: &str = r#"
services:
  init:
    image: castellan:dev
    command: ["pki", "ca", "--data-dir", "/data", "--out", "/ca"]
    volumes:
      - data:/data
      - ca:/ca
  agent:
    image: castellan:dev
    user: "0:0"
    command: ["agent", "--config", "/etc/castellan/agent.toml", "--once"]
    depends_on:
      init:
        condition: service_completed_successfully
    volumes:
      - ./agent.toml:/etc/castellan/agent.toml:ro
      - ca:/ca:ro
      - certs:/certs
  mosquitto:
    image: eclipse-mosquitto:2
    depends_on:
      agent:
        condition: service_completed_successfully
    volumes:
      - ./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro
      - certs:/certs:ro
  client:
    image: eclipse-mosquitto:2
    depends_on:
      mosquitto:
        condition: service_started
    entrypoint: ["/bin/sh", "-c"]
    command:
      - mosquitto_pub -h mosquitto -p 8883 --cafile /certs/app/root.pem --cert /certs/app/chain.pem --key /certs/app/key.pem -t t -m m
    volumes:
      - type: volume
        source: certs
        target: /certs
        read_only: true
volumes:
  data:
  ca:
  certs:
"#;

/// Writes the stack (with `edit` applied to the Compose text, `agent` as agent.toml and `conf` as
/// mosquitto.conf) into a new directory and runs the doctor on it.
fn stack(compose: &str, agent: &str, conf: &str) -> (tempfile::TempDir, super::Report) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("docker-compose.yml"), compose).expect("write");
    std::fs::write(dir.join("agent.toml"), agent).expect("write");
    std::fs::write(dir.join("mosquitto.conf"), conf).expect("write");
    let r = doctor(&["compose", "docker-compose.yml"], dir);
    (tmp, r)
}

/// `GOOD` with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "fixture lacks {from:?}");
    GOOD.replacen(from, to, 1)
}

fn message(f: &serde_json::Value) -> String {
    format!("{} / fix: {}", f["message"], f["fix"])
}

#[test]
fn issue_23_the_projects_compose_file_is_clean() {
    let file = project_compose();
    let dir = file.parent().expect("dir").to_owned();
    let r = doctor(&["compose", file.to_str().expect("utf-8")], &dir);
    r.expect_clean("deploy/compose/docker-compose.yml");
    let ok = r.get("compose-ok");
    let m = ok["message"].as_str().expect("m");
    // Mosquitto's three files, the paho app's three and the server's healthcheck CA file (the agent's
    // own healthcheck reads the files it writes).
    let n: usize = m
        .split("; ")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(n >= 7, "{m}");
}

#[test]
fn issue_23_a_good_stack_is_clean() {
    let (_t, r) = stack(GOOD, AGENT_TOML, MOSQUITTO_CONF);
    r.expect_clean("the good stack");
    r.expect("compose-ok", 0);
}

#[test]
fn issue_23_a_reader_without_the_writers_volume() {
    // The dev stack's second root cause: the broker's certificates are written in the agent's
    // container; Mosquitto mounts no volume there.
    let c = edit("      - certs:/certs:ro\n  client:", "  client:");
    let (_t, r) = stack(&c, AGENT_TOML, MOSQUITTO_CONF);
    let f = r.expect("compose-not-shared", 1);
    let m = message(f);
    assert_eq!(f["subject"], "mosquitto");
    assert!(
        m.contains("/certs/broker/chain.pem") && m.contains("agent"),
        "{m}"
    );
    assert!(
        r.findings.iter().any(|f| f["code"] == "compose-not-shared"
            && f["message"]
                .as_str()
                .is_some_and(|m| m.contains("/certs/broker/key.pem"))),
        "{}",
        r.dump()
    );
    assert!(
        m.contains("certs:/certs:ro"),
        "the fix names the mount: {m}"
    );
}

#[test]
fn issue_23_a_reader_mounting_read_write() {
    let c = edit(
        "      - certs:/certs:ro\n  client:",
        "      - certs:/certs\n  client:",
    );
    let (_t, r) = stack(&c, AGENT_TOML, MOSQUITTO_CONF);
    let f = r.get("compose-mount-writable");
    assert_eq!(r.status, 0, "a warning: {}", r.dump());
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["subject"], "mosquitto");
    assert!(message(f).contains("certs:/certs:ro"), "{}", message(f));
    // The long syntax too.
    let c = edit("        read_only: true\n", "");
    let (_t, r) = stack(&c, AGENT_TOML, MOSQUITTO_CONF);
    assert_eq!(
        r.get("compose-mount-writable")["subject"],
        "client",
        "{}",
        r.dump()
    );
}

#[test]
fn issue_23_a_reader_whose_user_cannot_read_the_agents_key() {
    // Without uid/gid, the agent (root) writes key.pem 0600 root:root; the broker drops to 1883.
    let agent = AGENT_TOML.replacen("uid = 1883\ngid = 1883\n", "", 1);
    let (_t, r) = stack(GOOD, &agent, MOSQUITTO_CONF);
    let f = r.expect("compose-not-readable", 1);
    let m = message(f);
    assert_eq!(f["subject"], "mosquitto");
    assert!(
        m.contains("/certs/broker/key.pem") && m.contains("0600"),
        "{m}"
    );
    assert!(m.contains("uid 1883") && m.contains("uid = 1883"), "{m}");
    // The certificates (0644) are readable: only the key is named.
    assert_eq!(
        r.findings
            .iter()
            .filter(|f| f["code"] == "compose-not-readable")
            .count(),
        1,
        "{}",
        r.dump()
    );
    // A reader with an explicit user other than the owner: the client as 1000.
    let c = edit(
        "    entrypoint: [\"/bin/sh\", \"-c\"]",
        "    user: \"1000:1000\"\n    entrypoint: [\"/bin/sh\", \"-c\"]",
    );
    let (_t, r) = stack(&c, AGENT_TOML, MOSQUITTO_CONF);
    let f = r.expect("compose-not-readable", 1);
    assert_eq!(f["subject"], "client");
    assert!(message(f).contains("/certs/app/key.pem"), "{}", message(f));
}

#[test]
fn issue_23_a_reader_started_before_the_writer_finished() {
    let c = edit(
        "      agent:\n        condition: service_completed_successfully",
        "      agent:\n        condition: service_started",
    );
    let (_t, r) = stack(&c, AGENT_TOML, MOSQUITTO_CONF);
    let f = r.expect("compose-start-order", 1);
    let m = message(f);
    assert_eq!(f["subject"], "mosquitto");
    assert!(m.contains("service_started"), "{m}");
    assert!(
        m.contains("condition: service_completed_successfully"),
        "{m}"
    );
    // The client waits for mosquitto only to start; that is enough once mosquitto waits for the
    // agent (transitive), and not enough when it does not: then both are named.
    let subjects: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f["code"] == "compose-start-order")
        .filter_map(|f| f["subject"].as_str())
        .collect();
    assert!(subjects.contains(&"client"), "{}", r.dump());
    // An agent that runs as a daemon without a healthcheck: the fix is a healthcheck.
    let c = edit(", \"--once\"]", "]").replacen(
        "      agent:\n        condition: service_completed_successfully",
        "      - agent",
        1,
    );
    let (_t, r) = stack(&c, AGENT_TOML, MOSQUITTO_CONF);
    let f = r.expect("compose-start-order", 1);
    assert!(message(f).contains("healthcheck"), "{}", message(f));
}

#[test]
fn issue_23_a_file_nobody_writes() {
    // Mosquitto's keyfile has a name the agent does not write.
    let conf = MOSQUITTO_CONF.replace("/certs/broker/key.pem", "/certs/broker/server.key");
    let (_t, r) = stack(GOOD, AGENT_TOML, &conf);
    let f = r.expect("compose-not-written", 1);
    let m = message(f);
    assert!(m.contains("server.key") && m.contains("key.pem"), "{m}");
    // A volume nobody writes into.
    let c = edit("        source: certs\n", "        source: empty\n").replacen(
        "volumes:\n  data:",
        "volumes:\n  empty:\n  data:",
        1,
    );
    let (_t, r) = stack(&c, AGENT_TOML, MOSQUITTO_CONF);
    let f = r.expect("compose-not-written", 1);
    assert_eq!(f["subject"], "client");
    assert!(message(f).contains("`empty`"), "{}", message(f));
}

#[test]
fn issue_23_garbage_is_a_finding() {
    let (_t, r) = stack("services: [unclosed\n", AGENT_TOML, MOSQUITTO_CONF);
    r.expect("compose-invalid", 1);
    let (_t, r) = stack("version: '3'\n", AGENT_TOML, MOSQUITTO_CONF);
    r.expect("compose-invalid", 1);
    // An agent configuration that cannot be parsed: a warning, the rest still judged.
    let (_t, r) = stack(GOOD, "server = [", MOSQUITTO_CONF);
    assert_eq!(
        r.get("compose-agent-config")["severity"],
        "warning",
        "{}",
        r.dump()
    );
}

const DEV_TOML: &str = r#"
[[certificate]]
name = "broker"
profile = "server"
common_name = "localhost"
dns = ["localhost"]
"#;

const DEV_COMPOSE: &str = r#"
services:
  mosquitto:
    image: eclipse-mosquitto:2
    volumes:
      - ./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro
      - ./certs/broker:/certs:ro
"#;

#[test]
fn issue_23_a_broker_that_cannot_read_the_key_dev_up_writes() {
    // `castellan dev up` writes certs/broker/key.pem 0600, owned by whoever ran it; Mosquitto,
    // started as root, drops to uid 1883 and cannot read it: the first thing a new user hits.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("docker-compose.yml"), DEV_COMPOSE).expect("write");
    std::fs::write(dir.join("castellan-dev.toml"), DEV_TOML).expect("write");
    std::fs::write(
        dir.join("mosquitto.conf"),
        "listener 8883\ncertfile /certs/chain.pem\nkeyfile /certs/key.pem\ncafile /certs/ca-bundle.pem\n",
    )
    .expect("write");
    let r = doctor(&["compose", "docker-compose.yml"], dir);
    let f = r.expect("compose-not-readable", 1);
    let m = message(f);
    assert!(
        m.contains("castellan dev up") && m.contains("/certs/key.pem"),
        "{m}"
    );
    assert!(
        m.contains("castellan-dev.toml") && m.contains("uid = 1883"),
        "{m}"
    );
    // The fix applied: clean.
    std::fs::write(
        dir.join("castellan-dev.toml"),
        format!("{DEV_TOML}uid = 1883\ngid = 1883\n"),
    )
    .expect("write");
    doctor(&["compose", "docker-compose.yml"], dir).expect_clean("dev up files owned by 1883");
    // Read-write bind mount of dev up's directory: a warning.
    std::fs::write(
        dir.join("docker-compose.yml"),
        DEV_COMPOSE.replace("./certs/broker:/certs:ro", "./certs/broker:/certs"),
    )
    .expect("write");
    let r = doctor(&["compose", "docker-compose.yml"], dir);
    assert_eq!(
        r.get("compose-mount-writable")["severity"],
        "warning",
        "{}",
        r.dump()
    );
}
