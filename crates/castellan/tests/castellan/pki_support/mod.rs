//! Helpers for the PKI end-to-end tests: the `openssl` CLI, JSON over HTTP, the store's CA read back
//! through the library, file modes, and (in `mqtt`) a real Mosquitto broker and a raw MQTT client on
//! rustls.
#![allow(dead_code)]

pub mod mqtt;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The five files of an issued set (`key.pem` last).
pub const SET_FILES: [&str; 5] = [
    "cert.pem",
    "chain.pem",
    "ca-bundle.pem",
    "root.pem",
    "key.pem",
];

/// Runs `openssl ARGS` in `cwd`.
pub fn openssl(args: &[&str], cwd: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run openssl")
}

/// Runs `openssl ARGS` and asserts success; returns stdout and stderr together.
pub fn openssl_ok(args: &[&str], cwd: &Path) -> String {
    let out = openssl(args, cwd);
    let text = both(&out);
    assert!(out.status.success(), "openssl {args:?} failed:\n{text}");
    text
}

/// stdout then stderr, lossily.
pub fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The PEM blocks of a text, each with its BEGIN/END lines and a trailing newline.
pub fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END ") {
            blocks.push(std::mem::take(&mut cur));
        }
    }
    blocks
}

/// Reads a file to a string, with the path in the panic.
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The permission bits of a path.
pub fn mode(path: impl AsRef<Path>) -> u32 {
    let path = path.as_ref();
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The names in a directory (sorted), or `None` when it does not exist.
pub fn listing(dir: &Path) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Some(names)
}

/// Asserts `dir` does not exist or holds no file at all.
pub fn assert_nothing_written(dir: &Path, what: &str) {
    if let Some(names) = listing(dir) {
        assert!(
            names.is_empty(),
            "{what}: {} holds {names:?}",
            dir.display()
        );
    }
}

/// Writes the intermediate of a set (the second block of chain.pem) into `dir/name`, checks it is the
/// last block of ca-bundle.pem too, and returns the path.
pub fn write_intermediate(set_dir: &Path, name: &str) -> PathBuf {
    let chain = pem_blocks(&read(set_dir.join("chain.pem")));
    let bundle = pem_blocks(&read(set_dir.join("ca-bundle.pem")));
    assert_eq!(chain.len(), 2, "chain.pem: leaf + intermediate");
    assert_eq!(bundle.len(), 2, "ca-bundle.pem: root + intermediate");
    assert_eq!(chain[1], bundle[1], "the same intermediate in both");
    let path = set_dir.parent().expect("set dir has a parent").join(name);
    std::fs::write(&path, &chain[1]).expect("write intermediate");
    path
}

/// The serial of a certificate as `openssl x509 -serial` prints it (upper-case hex, no colons).
pub fn openssl_serial(cert: &Path) -> String {
    let text = openssl_ok(
        &[
            "x509",
            "-in",
            cert.to_str().expect("utf-8 path"),
            "-noout",
            "-serial",
        ],
        Path::new("."),
    );
    text.trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("no serial in {text}"))
        .to_owned()
}

/// The public key of a certificate, PEM (`openssl x509 -pubkey`).
pub fn cert_pubkey(cert: &Path) -> String {
    openssl_ok(
        &[
            "x509",
            "-in",
            cert.to_str().expect("utf-8 path"),
            "-noout",
            "-pubkey",
        ],
        Path::new("."),
    )
}

/// The public key of a private key or CSR file, PEM.
pub fn key_pubkey(key: &Path) -> String {
    openssl_ok(
        &["pkey", "-in", key.to_str().expect("utf-8 path"), "-pubout"],
        Path::new("."),
    )
}

/// A blocking JSON client for the /v1 API.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// Status, content type and body of a response.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a `/v1` error: the status, `{"error": {"code", "message"}}` with a non-empty message;
    /// returns the code.
    pub fn error(&self, status: u16) -> String {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "no message: {v}");
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {v}"))
            .to_owned()
    }
}

impl Http {
    pub fn new() -> Self {
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        self.rt.block_on(async {
            let r = req.send().await.expect("HTTP request");
            let status = r.status().as_u16();
            let content_type = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = r.bytes().await.expect("body").to_vec();
            Reply {
                status,
                content_type,
                body,
            }
        })
    }

    /// `POST url` with a JSON body and a bearer token.
    pub fn post_json(&self, url: &str, token: &str, body: &serde_json::Value) -> Reply {
        self.send(self.client.post(url).bearer_auth(token).json(body))
    }

    /// `POST url` with a raw body sent as JSON (for malformed JSON).
    pub fn post_raw(&self, url: &str, token: &str, body: &str) -> Reply {
        self.send(
            self.client
                .post(url)
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned()),
        )
    }

    /// `GET url`, with a bearer token when given.
    pub fn get(&self, url: &str, token: Option<&str>) -> Reply {
        let mut req = self.client.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req)
    }
}

/// An admin access token from a running server, with the store's admin credential.
pub fn admin_token(url: &str, data_dir: &Path) -> String {
    let (id, secret) = crate::support::credential(&read(data_dir.join("admin-credential.json")));
    crate::support::token(url, &id, &secret)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The issuing CA row of the embedded store in `data_dir`, read through the store library.
pub fn active_ca(data_dir: &Path) -> castellan_store::CaRow {
    rt().block_on(async {
        let store = castellan_store::Store::open_sqlite(&data_dir.join("castellan.db"))
            .await
            .expect("open store");
        let row = store.active_ca().await.expect("read cas").expect("a CA");
        store.close().await;
        row
    })
}

/// The issuing CA of the embedded store in `data_dir` as a library `Issuer`: the intermediate's key is
/// unsealed with the store's master key (`data_dir/master.key`), as the server does.
pub fn store_issuer(data_dir: &Path) -> (castellan_core::pki::Issuer, castellan_store::CaRow) {
    rt().block_on(async {
        let store = castellan_store::Store::open_sqlite(&data_dir.join("castellan.db"))
            .await
            .expect("open store");
        let row = store.active_ca().await.expect("read cas").expect("a CA");
        let mk =
            castellan_core::envelope::MasterKey::from_base64(&read(data_dir.join("master.key")))
                .expect("master key");
        let dk = store
            .data_keys()
            .await
            .expect("data keys")
            .into_iter()
            .find(|d| d.id == row.dek_id)
            .expect("the CA's data key");
        let dek = mk.unwrap(&dk.id, &dk.wrapped).expect("unwrap data key");
        let der = dek
            .open(&format!("ca-key:{}", row.id), &row.sealed_key)
            .expect("open CA key");
        store.close().await;
        let issuer = castellan_core::pki::Issuer::new(
            &row.ca_cert_pem,
            &der,
            &row.root_pem,
            &row.intermediates_pem,
        )
        .expect("issuer");
        (issuer, row)
    })
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

const CA_EXT: &str = "[v3_int]\nbasicConstraints = critical, CA:TRUE, pathlen:0\n\
keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n\
authorityKeyIdentifier = keyid:always\n\n[v3_leaf]\nbasicConstraints = critical, CA:FALSE\n\
keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n\
subjectAltName = DNS:leaf.legacy\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";

/// Migrates the store in `d/d` to an intermediate CA of another PKI made with the openssl CLI
/// ([`openssl_pki`]): `castellan pki import-ca` with `openssl-intermediate.pem`, `int.key` and the
/// chain `openssl-root.pem`.
pub fn import_openssl_ca(d: &Path) {
    openssl_pki(d);
    crate::support::ok(
        &[
            "pki",
            "import-ca",
            "--cert",
            "openssl-intermediate.pem",
            "--key",
            "int.key",
            "--chain",
            "openssl-root.pem",
            "--data-dir",
            "d",
        ],
        d,
    );
}

/// A legacy PKI made with openssl: a self-signed root, an intermediate (CA, pathlen 0) and a leaf, all
/// P-256 with PKCS#8 keys.
pub fn openssl_pki(d: &Path) {
    std::fs::write(d.join("ext.cnf"), CA_EXT).expect("ext");
    for k in ["root", "int", "leaf"] {
        openssl_ok(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &format!("{k}.key"),
            ],
            d,
        );
    }
    openssl_ok(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/O=Legacy/CN=Legacy Root CA",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "openssl-root.pem",
        ],
        d,
    );
    for (k, subj, ext, out) in [
        (
            "int",
            "/O=Legacy/CN=Legacy Issuing CA",
            "v3_int",
            "openssl-intermediate.pem",
        ),
        ("leaf", "/CN=leaf.legacy", "v3_leaf", "openssl-leaf.pem"),
    ] {
        let csr = format!("{k}.csr");
        openssl_ok(
            &[
                "req",
                "-new",
                "-key",
                &format!("{k}.key"),
                "-subj",
                subj,
                "-out",
                &csr,
            ],
            d,
        );
        openssl_ok(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "openssl-root.pem",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-days",
                "1825",
                "-extfile",
                "ext.cnf",
                "-extensions",
                ext,
                "-out",
                out,
            ],
            d,
        );
    }
}
