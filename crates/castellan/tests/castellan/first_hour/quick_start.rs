//! Item 8: the README's quick start, extracted and run by bash as a user would paste it (the install
//! line replaced by this test's build on PATH, the port by a free one); its client's token verifies
//! with docs/verifiers.md's PyJWT snippet, and it leaves no server on the port.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The first fenced block of `lang` after the heading `heading` in `file`.
fn block(file: &str, heading: &str, lang: &str) -> String {
    let text = std::fs::read_to_string(repo().join(file)).expect("read");
    let after = &text[text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in {file}"))..];
    let start = after.find(&format!("```{lang}\n")).expect("fence") + 4 + lang.len();
    let len = after[start..].find("```").expect("end of fence");
    after[start..start + len].to_owned()
}

#[test]
fn the_readme_quick_start_runs_as_pasted_and_its_token_verifies_with_pyjwt() {
    let script = block("README.md", "## Quick start", "sh");
    let install: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("cargo install"))
        .collect();
    assert_eq!(install.len(), 1, "one real install step: {script}");
    assert!(
        !script.contains("target/"),
        "no PATH into ./target: {script}"
    );
    let port = free_port().to_string();
    let bin_dir = Path::new(bin()).parent().expect("bin dir").to_owned();
    let script = script
        .replace(install[0], "true # installed: the test's build is on PATH")
        .replace("8270", &port);
    let tmp = tempfile::tempdir().expect("tempdir");
    // Run from a directory that is not the checkout: the quick start makes its own.
    let cwd = tmp.path().join("elsewhere");
    std::fs::create_dir(&cwd).expect("mkdir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(&cwd)
        .env("PATH", path)
        .env("TMPDIR", tmp.path())
        .env("CASTELLAN_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("CASTELLAN_DATA_DIR")
        .env_remove("CASTELLAN_DATABASE_URL")
        .env_remove("CASTELLAN_MASTER_KEY_FILE")
        .env_remove("CASTELLAN_SERVER")
        .env_remove("CASTELLAN_TOKEN")
        .env_remove("CASTELLAN_CA_FILE")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quick start failed:\n{stdout}\n{stderr}"
    );
    // Every curl answer ends its line: the JSON answers each start one.
    for start in ["{\"access_token\"", "{\"keys\"", "{\"current_kid\""] {
        assert!(
            stdout.lines().any(|l| l.starts_with(start)),
            "{start} at the start of a line:\n{stdout}"
        );
    }
    assert!(!stdout.contains("}{"), "{stdout}");
    // No server is left on the port (`dev up` needs it next).
    std::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("the quick start left its server on {port}: {e}"));

    // Its directory, and the client's token verified with the PyJWT snippet of docs/verifiers.md.
    let dirs: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("castellan-data").is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let qs = &dirs[0];
    assert!(qs.join("certs/emqx/password").is_file());
    // The server again, on the port the quick start freed (its issuer is that address).
    let url = format!("http://127.0.0.1:{port}");
    let _server = Killed(
        command(&["serve"], qs)
            .env("CASTELLAN_LISTEN", format!("127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let http = reqwest::blocking_client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !http
        .get(format!("{url}/readyz"))
        .send()
        .is_ok_and(|r| r.status == 200)
    {
        assert!(std::time::Instant::now() < deadline, "server not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let token = ok(&["token", "--credential", "payments.json"], qs)
        .trim()
        .to_owned();
    let snippet = block("docs/verifiers.md", "## Python (PyJWT)", "python")
        .replace("https://auth.internal", &url);
    let program = format!("{snippet}\nimport json, sys\nprint(json.dumps(verify(sys.argv[1])))\n");
    let out = Command::new("python3")
        .args(["-c", &program, &token])
        .output()
        .expect("python3 with PyJWT");
    assert!(
        out.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).expect("claims");
    assert_eq!(claims["aud"], "payments-api", "{claims}");
    assert_eq!(claims["iss"], url, "{claims}");
}

/// A child process killed when dropped (a failed assertion included).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
