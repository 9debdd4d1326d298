//! Item 11: deploy/compose as parsed by PyYAML (there is no Docker engine here: the file is checked
//! for what it says, not run): the agent is a daemon that reloads the broker through a shared PID
//! namespace, each key belongs to its reader, the master key has a volume apart from the database's,
//! a paho app sits beside the broker; the Dockerfile builds its dependencies in a layer of their own.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

fn repo() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .canonicalize()
        .expect("repo")
}

/// docker-compose.yml as PyYAML reads it, as JSON.
fn compose() -> Value {
    let file = repo().join("deploy/compose/docker-compose.yml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&file)
        .output()
        .expect("python3 with PyYAML");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The mount target of `volume` in a service (`volume:/path[:ro]`).
fn mount_of<'a>(service: &'a Value, volume: &str) -> Option<&'a str> {
    service["volumes"].as_array()?.iter().find_map(|v| {
        let s = v.as_str()?;
        let rest = s.strip_prefix(volume)?.strip_prefix(':')?;
        Some(rest.split(':').next().unwrap_or(rest))
    })
}

#[test]
fn the_compose_agent_renews_as_a_daemon_and_reloads_the_broker_through_its_pid_namespace() {
    let c = compose();
    let s = &c["services"];
    let agent = &s["agent"];
    let command = strings(&agent["command"]);
    assert_eq!(
        command.first().map(String::as_str),
        Some("agent"),
        "{command:?}"
    );
    assert!(
        !command.iter().any(|a| a == "--once"),
        "a daemon, not one pass: {command:?}"
    );
    // The broker joins the agent's PID namespace and waits for the agent's files.
    let broker = &s["mosquitto"];
    assert_eq!(broker["pid"], "service:agent");
    assert_eq!(
        broker["depends_on"]["agent"]["condition"],
        "service_healthy"
    );
    assert!(
        agent["healthcheck"]["test"]
            .to_string()
            .contains("/certs/broker/key.pem")
    );
    // The reload command finds the broker by name, never signals PID 1 (the agent itself).
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = repo().join("deploy/compose/agent.toml");
    let out = ok(
        &["config", "check", toml.to_str().expect("path")],
        dir.path(),
    );
    assert!(out.contains("agent configuration"), "{out}");
    let text = std::fs::read_to_string(&toml).expect("agent.toml");
    let reload = text
        .lines()
        .find(|l| l.starts_with("reload = "))
        .expect("a reload command for the broker");
    assert!(
        reload.contains("= mosquitto ]") && reload.contains("kill -HUP"),
        "{reload}"
    );
    assert!(
        !text
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("kill -HUP 1")),
        "{text}"
    );
}

#[test]
fn each_key_belongs_to_its_reader_and_the_master_key_is_apart_from_the_database() {
    let c = compose();
    let s = &c["services"];
    let text =
        std::fs::read_to_string(repo().join("deploy/compose/agent.toml")).expect("agent.toml");
    // The app's user (its container's `user:`) owns the app's key; the broker's is mosquitto's.
    let app_user = s["app"]["user"]
        .as_str()
        .expect("the app runs as its own user");
    assert_ne!(app_user.split(':').next(), Some("0"), "not root");
    assert!(
        text.contains(&format!("owner = \"{app_user}\"")),
        "{app_user}: {text}"
    );
    assert!(text.contains("owner = \"1883:1883\""), "{text}");
    let app_dockerfile =
        std::fs::read_to_string(repo().join("deploy/compose/app/Dockerfile")).expect("app");
    let uid = app_user.split(':').next().expect("uid");
    assert!(
        app_dockerfile.contains(&format!("--uid {uid}")),
        "{app_dockerfile}"
    );
    assert!(app_dockerfile.contains("paho-mqtt"), "{app_dockerfile}");
    let app_py = std::fs::read_to_string(repo().join("deploy/compose/app/app.py")).expect("app.py");
    assert!(app_py.contains("import paho.mqtt.client"), "a paho app");
    assert_eq!(
        s["app"]["depends_on"]["mosquitto"]["condition"],
        "service_started"
    );

    // The master key: a volume of its own, given to the server read-only, never the data volume.
    for name in ["castellan-init", "castellan"] {
        let svc = &s[name];
        let key_file = svc["environment"]["CASTELLAN_MASTER_KEY_FILE"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: CASTELLAN_MASTER_KEY_FILE"));
        let data = mount_of(svc, "castellan-data").expect("data volume");
        let keys = mount_of(svc, "master-key").expect("master-key volume");
        assert!(
            !key_file.starts_with(data),
            "{name}: {key_file} is in the data volume {data}"
        );
        assert!(
            key_file.starts_with(&format!("{keys}/")),
            "{name}: {key_file}"
        );
    }
    assert!(c["volumes"].get("master-key").is_some());
    let image = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    assert!(
        image.contains("/var/lib/castellan/keys"),
        "the image has the mount point, owned by castellan"
    );
}

#[test]
fn the_dockerfile_builds_the_dependencies_in_a_layer_apart_from_the_sources() {
    let repo = repo();
    let image = std::fs::read_to_string(repo.join("Dockerfile")).expect("Dockerfile");
    let build_stage = &image[..image.find("\nFROM debian").expect("runtime stage")];
    let sources_at = build_stage.find("COPY . .").expect("COPY . .");
    let deps = &build_stage[..sources_at];
    assert!(
        deps.contains("cargo build --release --locked -p castellan"),
        "{deps}"
    );
    // Every crate's manifest reaches the dependency layer (a new crate would otherwise break it).
    for entry in std::fs::read_dir(repo.join("crates")).expect("crates") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("name");
        assert!(
            deps.contains(&format!("COPY crates/{name}/Cargo.toml crates/{name}/")),
            "crate {name} missing from the dependency layer"
        );
    }
    // The stubbed tree of that layer is a workspace cargo accepts: copy the manifests, run the stub
    // step with `cargo metadata` (offline) in place of the build.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for line in deps.lines().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (sources, dest) = parts[1..].split_at(parts.len() - 2);
        for src in sources {
            let target = d
                .join(dest[0])
                .join(Path::new(src).file_name().expect("file"));
            std::fs::create_dir_all(target.parent().expect("dir")).expect("mkdir");
            std::fs::copy(repo.join(src), &target).expect("copy");
        }
    }
    // The RUN instruction as Docker reads it: continued lines joined, up to the first that ends it.
    let mut run = String::new();
    for line in deps[deps.find("RUN ").expect("RUN") + 4..].lines() {
        match line.strip_suffix('\\') {
            Some(part) => run.push_str(part),
            None => {
                run.push_str(line);
                break;
            }
        }
    }
    let run = run.replace(
        "cargo build --release --locked -p castellan",
        "cargo tree --offline --locked --target x86_64-unknown-linux-gnu -p castellan > /dev/null",
    );
    let out = Command::new("sh")
        .args(["-c", &run])
        .current_dir(d)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{run}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cargo looks for the files of explicit targets only when it builds: each [[bench]] and
    // [[example]] of a manifest has its stub in that step.
    for entry in std::fs::read_dir(repo.join("crates")).expect("crates") {
        let crate_dir = entry.expect("entry").path();
        let name = crate_dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("manifest");
        for (table, dir) in [("[[bench]]", "benches"), ("[[example]]", "examples")] {
            for part in manifest.split(table).skip(1) {
                let target = part
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("name = \""))
                    .and_then(|r| r.strip_suffix('"'))
                    .expect("target name");
                let stub = format!("crates/{name}/{dir}/{target}.rs");
                assert!(
                    run.contains(&stub),
                    "{stub} is not stubbed in the dependency layer"
                );
            }
        }
    }
}
