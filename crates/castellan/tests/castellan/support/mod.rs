//! Running the real `castellan` binary in tests.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod proxy;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_castellan")
}

/// `castellan ARGS` in `cwd`, with none of the environment's store settings.
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env_remove("CASTELLAN_DATABASE_URL")
        .env_remove("CASTELLAN_MASTER_KEY_FILE")
        .env_remove("CASTELLAN_CA_FILE");
    c
}

/// Runs `castellan ARGS` to completion.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("run castellan")
}

/// Runs and asserts success; returns stdout.
pub fn ok(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd);
    assert!(
        out.status.success(),
        "castellan {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `castellan ARGS` with `input` on standard input.
pub fn run_with_stdin(args: &[&str], cwd: &Path, input: &[u8]) -> std::process::Output {
    let mut child = command(args, cwd)
        .env_remove("CASTELLAN_SERVER")
        .env_remove("CASTELLAN_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `castellan serve` process, killed on drop. Its stderr goes to a log file.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `castellan serve ARGS --listen 127.0.0.1:<free>` and waits for /readyz.
    pub fn start(args: &[&str], cwd: &Path) -> Server {
        Self::launch(args, cwd, None)
    }

    /// Like [`Server::start`] for a server that serves HTTPS (the ARGS say how): its URL is
    /// `https://localhost:<port>`, and readiness is checked trusting only the certificates of `ca_file`.
    pub fn start_https(args: &[&str], cwd: &Path, ca_file: &Path) -> Server {
        Self::launch(args, cwd, Some(ca_file))
    }

    fn launch(args: &[&str], cwd: &Path, ca_file: Option<&Path>) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = cwd.join(format!("serve-{port}.log"));
        let child = Command::new(bin())
            .arg("serve")
            .args(args)
            .args(["--listen", &listen])
            .current_dir(cwd)
            .env_remove("CASTELLAN_DATABASE_URL")
            .env_remove("CASTELLAN_MASTER_KEY_FILE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn serve");
        let url = match ca_file {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://{listen}"),
        };
        let mut server = Server { child, url, log };
        let client = match ca_file {
            Some(ca) => reqwest::blocking_client_trusting(&cwd.join(ca)),
            None => reqwest::blocking_client(),
        };
        server.wait_ready(&client);
        server
    }

    fn wait_ready(&mut self, client: &reqwest::Blocking) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early with {status}: {}", self.log_text());
            }
            if client
                .get(format!("{}/readyz", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become ready: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny blocking HTTP helper on top of std + reqwest's async client would be heavy; use ureq-like
/// calls through a current-thread runtime instead.
pub mod reqwest {
    pub struct Blocking {
        rt: tokio::runtime::Runtime,
        client: ::reqwest::Client,
    }
    pub fn blocking_client() -> Blocking {
        with(::reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)))
    }
    /// Like [`blocking_client`] with another time limit per request than 10 s.
    pub fn blocking_client_waiting(limit: std::time::Duration) -> Blocking {
        with(::reqwest::Client::builder().timeout(limit))
    }
    /// A client for HTTPS that trusts only the certificates of the PEM file `ca`.
    pub fn blocking_client_trusting(ca: &std::path::Path) -> Blocking {
        let pem = std::fs::read(ca).expect("CA file");
        let certs = ::reqwest::Certificate::from_pem_bundle(&pem).expect("CA PEM");
        with(
            ::reqwest::Client::builder()
                .tls_certs_only(certs)
                .timeout(std::time::Duration::from_secs(10)),
        )
    }
    fn with(builder: ::reqwest::ClientBuilder) -> Blocking {
        Blocking {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt"),
            client: builder.build().expect("client"),
        }
    }
    pub struct Resp {
        pub status: u16,
        pub headers: ::reqwest::header::HeaderMap,
        pub body: Vec<u8>,
    }
    impl Resp {
        pub fn status(&self) -> ::reqwest::StatusCode {
            ::reqwest::StatusCode::from_u16(self.status).expect("status")
        }
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }
    }
    pub struct Req<'a> {
        b: &'a Blocking,
        req: ::reqwest::RequestBuilder,
    }
    impl<'a> Req<'a> {
        pub fn bearer(self, t: &str) -> Self {
            Req {
                b: self.b,
                req: self.req.bearer_auth(t),
            }
        }
        pub fn basic(self, id: &str, secret: &str) -> Self {
            Req {
                b: self.b,
                req: self.req.basic_auth(id, Some(secret)),
            }
        }
        pub fn json(self, body: &serde_json::Value) -> Self {
            Req {
                b: self.b,
                req: self.req.json(body),
            }
        }
        pub fn form(self, f: &[(&str, &str)]) -> Self {
            Req {
                b: self.b,
                req: self.req.form(f),
            }
        }
        pub fn send(self) -> Result<Resp, ::reqwest::Error> {
            self.b.rt.block_on(async {
                let r = self.req.send().await?;
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let body = r.bytes().await?.to_vec();
                Ok(Resp {
                    status,
                    headers,
                    body,
                })
            })
        }
    }
    impl Blocking {
        pub fn get(&self, url: String) -> Req<'_> {
            Req {
                b: self,
                req: self.client.get(url),
            }
        }
        pub fn post(&self, url: String) -> Req<'_> {
            Req {
                b: self,
                req: self.client.post(url),
            }
        }
    }
}

/// `{client_id, client_secret}` from `client create --json` or a credential file.
pub fn credential(json_text: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(json_text).expect("credential JSON");
    (
        v["client_id"].as_str().expect("id").to_owned(),
        v["client_secret"].as_str().expect("secret").to_owned(),
    )
}

/// The kids of the JWKS at `url`, in its order.
pub fn jwks_kids(url: &str) -> Vec<String> {
    let r = reqwest::blocking_client()
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .expect("jwks");
    r.json()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Gets an access token from `url`.
pub fn token(url: &str, id: &str, secret: &str) -> String {
    let c = reqwest::blocking_client();
    let r = c
        .post(format!("{url}/oauth2/token"))
        .basic(id, secret)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("token request");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Writes a fresh master key file (what `openssl rand -base64 32` prints) and returns its path.
pub fn master_key_file(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let out = Command::new("openssl")
        .args(["rand", "-base64", "32"])
        .output()
        .expect("openssl rand");
    assert!(out.status.success());
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}
