//! Issue 19: the chart's init Job script, run for real: the script `helm template` renders, with the
//! real `castellan` binary on an embedded store, against a stand-in for the API server's Secret
//! endpoint (fake_kube_api.py). The first run initializes the store and applies the admin credential
//! Secret (after a dry run); the credential it wrote signs in; a second run changes nothing and
//! writes no Secret; an API that refuses the dry run stops the script before anything is initialized.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use crate::helm::{chart, run_ok, tool};
use crate::support::*;

struct Api {
    child: std::process::Child,
    url: String,
    record: std::path::PathBuf,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    fn start(dir: &Path, name: &str, status: u16) -> Api {
        let port = free_port();
        let record = dir.join(format!("{name}.jsonl"));
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan/fake_kube_api.py"))
            .arg(port.to_string())
            .arg(&record)
            .arg(status.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fake API did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Api {
            child,
            url: format!("http://127.0.0.1:{port}"),
            record,
        }
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect()
    }
}

/// The rendered init Job: its script and its plain `value` environment.
fn job_script(helm: &Path) -> (String, Vec<(String, String)>) {
    let yaml = run_ok(
        Command::new(helm)
            .args([
                "template",
                "rel",
                "--namespace",
                "castellan",
                "--show-only",
                "templates/init-job.yaml",
            ])
            .arg(chart())
            .args(["--set", "commonLabels.stage=prod"]),
    );
    let out = Command::new("python3")
        .args(["-c", "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d and d['kind']=='Job'][0]))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3");
    let job: Value = serde_json::from_slice(&out.stdout).expect("job JSON");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"], serde_json::json!(["/bin/sh", "-ec"]));
    let env = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    (c["args"][0].as_str().expect("script").to_owned(), env)
}

/// Runs the script as the Job would, on the store in `data` with `key`, against `api`.
fn run_script(
    dir: &Path,
    script: &str,
    env: &[(String, String)],
    api: &Api,
    data: &str,
    key: &Path,
) -> std::process::Output {
    let sa = dir.join("sa");
    std::fs::create_dir_all(&sa).expect("sa dir");
    std::fs::write(sa.join("token"), "projected-token-for-the-test").expect("token");
    std::fs::write(sa.join("ca.crt"), "").expect("ca");
    let bin_dir = Path::new(bin()).parent().expect("bin dir").to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-ec", script]).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("CASTELLAN_DATABASE_URL")
        .env("CASTELLAN_DATA_DIR", dir.join(data))
        .env("CASTELLAN_MASTER_KEY_FILE", key)
        .env("NAMESPACE", "castellan")
        .env("KUBE_API", &api.url)
        .env("SA_DIR", &sa)
        .env("PATH", path)
        .output()
        .expect("sh")
}

#[test]
fn the_init_job_writes_the_admin_credential_to_a_secret_once() {
    let Some(helm) = tool("helm") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let key = master_key_file(d, "master.key");
    let (script, env) = job_script(&helm);
    let api = Api::start(d, "api", 200);

    let out = run_script(d, &script, &env, &api, "data", &key);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("admin credential written to Secret castellan-admin-credential"),
        "{text}"
    );
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for r in &reqs {
        assert_eq!(
            r["path"],
            "/api/v1/namespaces/castellan/secrets/castellan-admin-credential"
        );
        assert_eq!(r["content_type"], "application/apply-patch+yaml");
        assert_eq!(r["authorization"], "Bearer projected-token-for-the-test");
        let body = r["body"].as_str().expect("body");
        assert!(
            body.contains("kind: Secret") && body.contains("stage: prod"),
            "{body}"
        );
    }
    assert!(reqs[0]["query"].as_str().expect("q").contains("dryRun=All"));
    assert!(!reqs[1]["query"].as_str().expect("q").contains("dryRun"));
    // The credential in the applied Secret signs in; it appears nowhere in the Job's output.
    let body = reqs[1]["body"].as_str().expect("body");
    let b64 = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("credential.json: "))
        .expect("credential.json");
    let cred = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let (id, secret) = credential(std::str::from_utf8(&cred).expect("utf-8"));
    assert!(!text.contains(&secret), "the secret was printed");
    let server = Server::start(
        &[
            "--data-dir",
            "data",
            "--master-key-file",
            key.to_str().expect("utf-8"),
        ],
        d,
    );
    token(&server.url, &id, &secret);
    drop(server);

    // Again (the pre-upgrade hook): nothing changes, no Secret is written.
    let out = run_script(d, &script, &env, &api, "data", &key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialized"));
    let reqs = api.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert!(reqs[2]["query"].as_str().expect("q").contains("dryRun=All"));

    // An API server that refuses: the script stops before the store is initialized.
    let refusing = Api::start(d, "refusing", 403);
    let out = run_script(d, &script, &env, &refusing, "fresh", &key);
    assert!(!out.status.success());
    assert_eq!(refusing.requests().len(), 1);
    let again = run(
        &[
            "init",
            "--data-dir",
            "fresh",
            "--master-key-file",
            key.to_str().expect("utf-8"),
            "--admin-credential-out",
            "-",
        ],
        d,
    );
    assert!(again.status.success());
    assert!(
        !again.stdout.is_empty(),
        "the refused run had initialized the store"
    );
}
