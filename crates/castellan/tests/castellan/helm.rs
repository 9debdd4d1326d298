//! Issue 19: the Helm chart at deploy/helm/castellan. `helm lint` and `helm template` over a matrix of
//! values; every rendered object validated against the Kubernetes 1.29, 1.30 and 1.31 schemas (PyPI
//! `kubernetes-validate`, strict); every object and pod template checked for the configured labels and
//! the restricted Pod Security Standard (helm_check.py); the rendered castellan.toml checked by
//! `castellan config check`. helm comes from PATH or `../shared/tools/k8s-tools`' directory; without
//! helm or kubernetes-validate the tests skip, except under CI=true, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::*;

pub(crate) fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/castellan")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A tool from PATH or the k8s-tools directory; `None` (a skip) when missing outside CI.
pub(crate) fn tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(d) = std::env::var_os("K8S_TOOLS") {
        dirs.push(PathBuf::from(d).join("bin"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cache/k8s-tools/bin"));
    }
    if let Some(p) = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(p);
    }
    assert!(
        !in_ci(),
        "{name} is not installed (CI=true: a missing tool fails); run ../shared/tools/k8s-tools and put its directory on PATH"
    );
    eprintln!("skipped: {name} is not installed (../shared/tools/k8s-tools installs helm)");
    None
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Rendered {
    /// The objects, parsed.
    docs: Vec<Value>,
    toml: String,
}

impl Rendered {
    fn kinds(&self) -> Vec<String> {
        self.docs
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }
}

/// Lints and renders the chart with `values`, validates every object for 1.29–1.31 and runs the
/// label and restricted-profile checks.
fn render(helm: &Path, validate: &Path, dir: &Path, label: &str, values: &Value) -> Rendered {
    let values_file = dir.join(format!("{label}.values.json"));
    std::fs::write(&values_file, values.to_string()).expect("values");
    run_ok(
        Command::new(helm)
            .arg("lint")
            .arg("--strict")
            .arg(chart())
            .arg("-f")
            .arg(&values_file),
    );
    let yaml = run_ok(
        Command::new(helm)
            .args(["template", "rel", "--namespace", "castellan"])
            .arg(chart())
            .arg("-f")
            .arg(&values_file),
    );
    let out = dir.join(format!("{label}.yaml"));
    std::fs::write(&out, &yaml).expect("rendered");
    for version in ["1.29.0", "1.30.0", "1.31.0"] {
        run_ok(
            Command::new(validate)
                .args(["--strict", "--quiet", "-k", version])
                .arg(&out),
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan/helm_check.py");
    let summary = run_ok(
        Command::new("python3")
            .arg(script)
            .arg(&out)
            .arg(values.to_string()),
    );
    let v: Value = serde_json::from_str(&summary).expect("summary JSON");
    let toml = v["castellan_toml"]
        .as_str()
        .expect("castellan.toml")
        .to_owned();
    // The rendered configuration is one the server accepts.
    let toml_file = dir.join(format!("{label}.castellan.toml"));
    std::fs::write(&toml_file, &toml).expect("toml");
    ok(
        &["config", "check", toml_file.to_str().expect("utf-8")],
        dir,
    );
    Rendered {
        docs: v["docs"].as_array().expect("docs").clone(),
        toml,
    }
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    Some((tool("helm")?, tool("kubernetes-validate")?))
}

fn env_of<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("env {name} in {container}"))
}

#[test]
fn the_default_chart_renders_three_restricted_replicas_with_probes_and_a_pdb() {
    let Some((helm, validate)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let r = render(&helm, &validate, dir.path(), "defaults", &json!({}));
    let deploys = r.of_kind("Deployment");
    assert_eq!(deploys.len(), 1, "{:?}", r.kinds());
    let d = deploys[0];
    assert_eq!(d["spec"]["replicas"], 3);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["startupProbe"]["httpGet"]["path"].is_string());
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    let keys: Vec<&str> = pod["topologySpreadConstraints"]
        .as_array()
        .expect("spread")
        .iter()
        .map(|t| t["topologyKey"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
    assert_eq!(r.of_kind("PodDisruptionBudget").len(), 1);
    assert_eq!(r.of_kind("Service").len(), 1);
    // The init Job is a pre-install/pre-upgrade hook.
    let job = r.of_kind("Job");
    assert_eq!(job.len(), 1);
    assert_eq!(
        job[0]["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    let script = job[0]["spec"]["template"]["spec"]["containers"][0]["args"][0]
        .as_str()
        .expect("script");
    assert!(script.contains("--admin-credential-out -"), "{script}");
    // Nothing optional by default.
    for kind in [
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "NetworkPolicy",
        "RequestAuthentication",
        "CronJob",
    ] {
        assert!(r.of_kind(kind).is_empty(), "{kind} rendered by default");
    }
    assert!(!r.toml.contains("trusted_issuer"));
}

#[test]
fn every_optional_object_renders_valid_with_the_examples() {
    let Some((helm, validate)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let values = json!({
        "hpa": {"enabled": true},
        "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": true, "apiServer": {"cidrs": ["10.0.0.1/32"]},
            "postgres": {"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}},
        "istio": {"enabled": true, "audiences": ["invoices"]},
        "examples": {"agent": {"enabled": true}, "caBundle": {"enabled": true}},
        "trustedIssuers": [{
            "issuer": "https://kubernetes.default.svc.cluster.local", "discovery": true,
            "caFile": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "audience": "castellan", "subject": "system:serviceaccount:castellan:broker",
            "clientId": "k8s:{namespace}:{serviceaccount}", "scopes": ["pki:issue", "secrets:read:mqtt"],
            "tokenTtl": "10m"}],
        "serviceAccount": {"automountToken": true},
    });
    let r = render(&helm, &validate, dir.path(), "all", &values);
    for kind in [
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "NetworkPolicy",
        "RequestAuthentication",
        "AuthorizationPolicy",
        "CronJob",
    ] {
        assert_eq!(r.of_kind(kind).len(), 1, "{kind}: {:?}", r.kinds());
    }
    // With an HPA the Deployment leaves replicas to it.
    let server = r
        .of_kind("Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "rel-castellan")
        .expect("server");
    assert!(server["spec"]["replicas"].is_null());
    let authz = &r.of_kind("AuthorizationPolicy")[0]["spec"]["rules"][0];
    assert_eq!(authz["when"][0]["key"], "request.auth.claims[scope]");
    let ra = &r.of_kind("RequestAuthentication")[0]["spec"]["jwtRules"][0];
    assert_eq!(
        ra["jwksUri"],
        "https://castellan.example.com/.well-known/jwks.json"
    );
    // The agent example: an init container and a sidecar sharing an emptyDir with the broker and
    // the app, signing in with a projected token of the configured audience.
    let ex = r
        .of_kind("Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "rel-castellan-example-broker")
        .expect("example");
    let spec = &ex["spec"]["template"]["spec"];
    assert_eq!(
        spec["initContainers"][0]["args"],
        json!(["agent", "--config", "/etc/agent/agent.toml", "--once"])
    );
    let names: Vec<&str> = spec["containers"]
        .as_array()
        .expect("c")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["broker", "app", "agent"]);
    let token = spec["volumes"]
        .as_array()
        .expect("v")
        .iter()
        .find(|v| v["name"] == "castellan-token")
        .expect("token volume");
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "castellan"
    );
    let shared = spec["volumes"]
        .as_array()
        .expect("v")
        .iter()
        .find(|v| v["name"] == "shared")
        .expect("shared");
    assert!(shared["emptyDir"].is_object());
    // The agent configuration it mounts is one the agent accepts (parsed by the agent's own parser
    // through `castellan agent --help`-free validation: the config is checked by parsing it here).
    let cm = r
        .of_kind("ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "rel-castellan-example-broker")
        .expect("agent cm");
    let agent_toml = cm["data"]["agent.toml"].as_str().expect("agent.toml");
    let parsed = castellan_agent_config(agent_toml);
    assert!(parsed.contains("auth = \"kubernetes\""), "{parsed}");
    // The server's configuration carries the trusted issuer.
    assert!(
        r.toml.contains("[[trusted_issuer]]") && r.toml.contains("discovery = true"),
        "{}",
        r.toml
    );
}

/// The agent configuration text, after the agent's own parser accepted it.
fn castellan_agent_config(text: &str) -> String {
    castellan_agent::config::AgentConfig::from_toml("agent.toml", text)
        .unwrap_or_else(|e| panic!("agent.toml of the example: {e}\n{text}"));
    text.to_owned()
}

#[test]
fn configured_labels_reach_every_object_and_pod_template() {
    let Some((helm, validate)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let values = json!({
        "commonLabels": {"stage": "prod", "team": "identity"},
        "commonAnnotations": {"owner": "identity@example.com"},
        "podLabels": {"sidecar.istio.io/inject": "true"},
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "hpa": {"enabled": true}, "serviceMonitor": {"enabled": true}, "networkPolicy": {"enabled": true},
        "istio": {"enabled": true}, "examples": {"agent": {"enabled": true}, "caBundle": {"enabled": true}},
    });
    // helm_check.py fails the render when one object or pod template lacks them.
    let r = render(&helm, &validate, dir.path(), "labels", &values);
    assert!(r.docs.len() >= 15, "{:?}", r.kinds());
    let pod = &r.of_kind("Deployment")[0]["spec"]["template"]["metadata"];
    assert_eq!(pod["labels"]["stage"], "prod");
    assert_eq!(pod["labels"]["sidecar.istio.io/inject"], "true");
    assert_eq!(pod["annotations"]["prometheus.io/scrape"], "true");
    assert_eq!(pod["annotations"]["owner"], "identity@example.com");
    // The Secret and ConfigMap the Jobs write carry the labels too (the admission policy sees them).
    let job = &r.of_kind("Job")[0]["spec"]["template"]["spec"]["containers"][0];
    assert!(
        env_of(job, "LABELS")["value"]
            .as_str()
            .expect("labels")
            .contains("stage: prod")
    );
    // The checker itself refuses a template without them: a values file asking for a label the chart
    // does not add (podLabels checked against commonLabels only) is caught.
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/castellan/helm_check.py"))
        .arg(dir.path().join("labels.yaml"))
        .arg(json!({"commonLabels": {"stage": "dev"}}).to_string())
        .output()
        .expect("python3");
    assert!(
        !out.status.success(),
        "the checker accepted a missing label"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("lack"));
}

#[test]
fn store_url_and_master_key_come_from_the_named_existing_secrets() {
    let Some((helm, validate)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let values = json!({
        "database": {"existingSecret": "pg-from-eso", "key": "DATABASE_URL"},
        "masterKey": {"existingSecret": "sealed-master", "key": "key.b64"},
        "admin": {"credentialSecret": "castellan-admin"},
    });
    let r = render(&helm, &validate, dir.path(), "secrets", &values);
    let pods: Vec<&Value> = r
        .of_kind("Deployment")
        .into_iter()
        .chain(r.of_kind("Job"))
        .map(|o| &o["spec"]["template"]["spec"])
        .collect();
    assert_eq!(pods.len(), 2);
    for pod in pods {
        let c = &pod["containers"][0];
        let db = &env_of(c, "CASTELLAN_DATABASE_URL")["valueFrom"]["secretKeyRef"];
        assert_eq!(db["name"], "pg-from-eso");
        assert_eq!(db["key"], "DATABASE_URL");
        assert_eq!(
            env_of(c, "CASTELLAN_MASTER_KEY_FILE")["value"],
            "/etc/castellan/master-key/key.b64"
        );
        let vol = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "master-key")
            .expect("master-key volume");
        assert_eq!(vol["secret"]["secretName"], "sealed-master");
    }
    // No Secret is rendered by the chart: they exist already (the Job writes only the admin one).
    assert!(r.of_kind("Secret").is_empty());
    let role = r
        .of_kind("Role")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "rel-castellan-init")
        .expect("role");
    assert_eq!(
        role["rules"][0]["resourceNames"],
        json!(["castellan-admin"])
    );
}

#[test]
fn a_typo_or_a_bad_value_fails_at_install() {
    let Some((helm, _)) = tools() else { return };
    for set in [
        "replicaCont=2",
        "publicUrl=castellan",
        "trustedIssuers[0].issuer=https://k",
        "topologySpread.nodes=Maybe",
    ] {
        let out = Command::new(&helm)
            .args(["template", "rel"])
            .arg(chart())
            .args(["--set", set])
            .output()
            .expect("helm");
        assert!(!out.status.success(), "{set} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("schema"),
            "{set}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
