//! The doctor's fixture generator: builds each broken (and each good) setup the doctor must judge, at
//! test time, into a temporary directory. Certificates come from rcgen; the RSA-1024 key of the
//! weak-key case and the "openssl-made" good set come from the `openssl` command-line tool.
//!
//! Every setup is described by the arguments it needs (`doctor chain --cert … --ca …`), so the tests
//! can stay table-driven: one setup per finding code.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A CA: its parameters, key and certificate.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub pem: String,
    pub der: Vec<u8>,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub pem: String,
    pub der: Vec<u8>,
    pub key_pem: String,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Doctor Fixtures");
    dn.push(DnType::CommonName, cn);
    dn
}

fn days(n: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(n)
}

fn ca_params(cn: &str, constraint: BasicConstraints) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(constraint);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = days(-1);
    p.not_after = days(3650);
    p.use_authority_key_identifier_extension = true;
    p
}

impl Ca {
    /// A self-signed root.
    pub fn root(cn: &str) -> Ca {
        let params = ca_params(cn, BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("root");
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            params,
            key,
        }
    }

    /// Signs with this CA.
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// An intermediate CA below this one (pathLenConstraint `path_len` when given).
    pub fn intermediate(&self, cn: &str, path_len: Option<u8>) -> Ca {
        let constraint = match path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        };
        let params = ca_params(cn, constraint);
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.issuer())
            .expect("intermediate");
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            params,
            key,
        }
    }

    /// A CA with the same name and key id as this one but another key: what signs a certificate whose
    /// signature then fails against the real CA.
    pub fn impostor(&self) -> Ca {
        let ski = x509_ski(&self.der);
        let mut params = self.params.clone();
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("impostor");
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            params,
            key,
        }
    }

    /// A leaf issued by this CA.
    pub fn leaf(&self, spec: &LeafSpec) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let cert = spec.params().signed_by(&key, &self.issuer()).expect("leaf");
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A leaf for a public key given as SubjectPublicKeyInfo DER (no private key at hand).
    pub fn leaf_for_spki(&self, spec: &LeafSpec, spki_der: &[u8]) -> Leaf {
        let spki = rcgen::SubjectPublicKeyInfo::from_der(spki_der).expect("spki");
        let cert = spec
            .params()
            .signed_by(&spki, &self.issuer())
            .expect("leaf");
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: String::new(),
        }
    }
}

/// The subject key identifier of a DER certificate (read with x509-parser, through rcgen's issuer).
fn x509_ski(der: &[u8]) -> Vec<u8> {
    let info = castellan_core::pki::parse_cert_der(der).expect("parse");
    let hex = info.subject_key_id.expect("ski");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// How a leaf looks.
#[derive(Clone)]
pub struct LeafSpec {
    pub cn: String,
    pub dns: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub not_before_days: i64,
    pub not_after_days: i64,
}

impl LeafSpec {
    /// A server certificate for localhost and 127.0.0.1, valid from yesterday for 90 days.
    pub fn server() -> Self {
        LeafSpec {
            cn: "localhost".to_owned(),
            dns: vec!["localhost".to_owned()],
            ips: vec!["127.0.0.1".parse().expect("ip")],
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            not_before_days: -1,
            not_after_days: 90,
        }
    }

    /// A client certificate.
    pub fn client(cn: &str) -> Self {
        LeafSpec {
            cn: cn.to_owned(),
            dns: Vec::new(),
            ips: Vec::new(),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ..Self::server()
        }
    }

    fn params(&self) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(&self.cn);
        p.subject_alt_names = self
            .dns
            .iter()
            .map(|d| SanType::DnsName(d.clone().try_into().expect("dns")))
            .chain(self.ips.iter().map(|i| SanType::IpAddress(*i)))
            .collect();
        p.extended_key_usages = self.eku.clone();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = days(self.not_before_days);
        p.not_after = days(self.not_after_days);
        p.use_authority_key_identifier_extension = true;
        p
    }
}

/// A good three-level PKI written to a directory: `root.pem`, `int.pem`, `ca-bundle.pem` (root +
/// intermediate), `cert.pem` (leaf), `chain.pem` (leaf + intermediate), `key.pem`.
pub struct Pki {
    pub dir: PathBuf,
    pub root: Ca,
    pub int: Ca,
    pub leaf: Leaf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        Self::with_leaf(dir, &LeafSpec::server())
    }

    pub fn with_leaf(dir: &Path, spec: &LeafSpec) -> Pki {
        std::fs::create_dir_all(dir).expect("dir");
        let root = Ca::root("Fixture Root CA");
        let int = root.intermediate("Fixture Intermediate CA", Some(0));
        let leaf = int.leaf(spec);
        let pki = Pki {
            dir: dir.to_owned(),
            root,
            int,
            leaf,
        };
        pki.write("root.pem", &pki.root.pem);
        pki.write("int.pem", &pki.int.pem);
        pki.write("ca-bundle.pem", format!("{}{}", pki.root.pem, pki.int.pem));
        pki.write("cert.pem", &pki.leaf.pem);
        pki.write("chain.pem", format!("{}{}", pki.leaf.pem, pki.int.pem));
        pki.write("key.pem", &pki.leaf.key_pem);
        pki
    }

    /// Writes `name` into the directory; returns its path as a string.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        write(&self.dir, name, contents)
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write fixture");
    p.display().to_string()
}

/// Runs `openssl ARGS` in `dir` and asserts success.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A good root → intermediate → server leaf made with the `openssl` CLI alone (P-256 and RSA-2048),
/// written into `dir`: `root.pem`, `chain.pem`, `key.pem`.
pub fn openssl_set(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("ext.cnf"),
        "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n\
         [int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n\
         [leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
    )
    .expect("ext");
    let steps: &[&[&str]] = &[
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "root-key.pem",
        ],
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root-key.pem",
            "-subj",
            "/O=OpenSSL Fixtures/CN=OpenSSL Root",
            "-days",
            "3650",
            "-sha256",
            "-extensions",
            "ca",
            "-config",
            "ext.cnf",
            "-out",
            "root.pem",
        ],
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "int-key.pem",
        ],
        &[
            "req",
            "-new",
            "-key",
            "int-key.pem",
            "-subj",
            "/O=OpenSSL Fixtures/CN=OpenSSL Intermediate",
            "-out",
            "int.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root-key.pem",
            "-CAcreateserial",
            "-days",
            "1825",
            "-sha256",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "int",
            "-out",
            "int.pem",
        ],
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "key.pem",
        ],
        &[
            "req",
            "-new",
            "-key",
            "key.pem",
            "-subj",
            "/CN=localhost",
            "-out",
            "leaf.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "int.pem",
            "-CAkey",
            "int-key.pem",
            "-CAcreateserial",
            "-days",
            "90",
            "-sha256",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "leaf",
            "-out",
            "cert.pem",
        ],
    ];
    for step in steps {
        openssl(dir, step);
    }
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("cert.pem")).expect("cert"),
        std::fs::read_to_string(dir.join("int.pem")).expect("int")
    );
    std::fs::write(dir.join("chain.pem"), chain).expect("chain");
}

/// The SubjectPublicKeyInfo (DER) of a fresh RSA-1024 key, from the `openssl` CLI (no Rust crypto
/// library here makes keys that small).
pub fn rsa1024_spki(dir: &Path) -> Vec<u8> {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "weak-key.pem",
        ],
    );
    openssl(
        dir,
        &["pkey", "-in", "weak-key.pem", "-pubout", "-outform", "DER"],
    )
}

/// Builds the setup for one `doctor chain` finding code in `dir`; returns the arguments after
/// `doctor chain`.
pub fn chain_case(code: &str, dir: &Path) -> Vec<String> {
    let pki = Pki::new(dir);
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let (chain, key, root) = (
        pki.path("chain.pem"),
        pki.path("key.pem"),
        pki.path("root.pem"),
    );
    match code {
        "good" => s(&[
            "--cert",
            &chain,
            "--key",
            &key,
            "--ca",
            &root,
            "--host",
            "localhost",
        ]),
        "pem-invalid" => {
            let f = pki.write("notpem.pem", "this is not a certificate\n");
            s(&["--cert", &f, "--ca", &root])
        }
        "private-key-in-cert-file" => {
            let f = pki.write(
                "combined.pem",
                format!("{}{}{}", pki.leaf.pem, pki.int.pem, pki.leaf.key_pem),
            );
            s(&["--cert", &f, "--ca", &root])
        }
        "missing-intermediate" => s(&["--cert", &pki.path("cert.pem"), "--ca", &root]),
        "chain-order" => {
            let f = pki.write("reversed.pem", format!("{}{}", pki.int.pem, pki.leaf.pem));
            s(&["--cert", &f, "--ca", &root])
        }
        "untrusted-root" => {
            let other = Ca::root("Some Other Root CA");
            let f = pki.write("other-root.pem", &other.pem);
            s(&["--cert", &chain, "--ca", &f])
        }
        "self-signed-leaf" => {
            let key = KeyPair::generate().expect("key");
            let cert = LeafSpec::server()
                .params()
                .self_signed(&key)
                .expect("self-signed");
            let f = pki.write("self-signed.pem", cert.pem());
            s(&["--cert", &f, "--ca", &root])
        }
        "expired" => {
            let leaf = pki.int.leaf(&LeafSpec {
                not_before_days: -60,
                not_after_days: -2,
                ..LeafSpec::server()
            });
            let f = pki.write("expired.pem", format!("{}{}", leaf.pem, pki.int.pem));
            s(&["--cert", &f, "--ca", &root])
        }
        "not-yet-valid" => {
            let leaf = pki.int.leaf(&LeafSpec {
                not_before_days: 3,
                not_after_days: 90,
                ..LeafSpec::server()
            });
            let f = pki.write("future.pem", format!("{}{}", leaf.pem, pki.int.pem));
            s(&["--cert", &f, "--ca", &root])
        }
        "hostname-mismatch" => s(&[
            "--cert",
            &chain,
            "--ca",
            &root,
            "--host",
            "mqtt.example.com",
        ]),
        "wrong-purpose" => {
            let leaf = pki.int.leaf(&LeafSpec::client("device-1"));
            let f = pki.write("client-chain.pem", format!("{}{}", leaf.pem, pki.int.pem));
            s(&["--cert", &f, "--ca", &root, "--purpose", "server"])
        }
        "key-mismatch" => {
            let other = KeyPair::generate().expect("key");
            let f = pki.write("other-key.pem", other.serialize_pem());
            s(&["--cert", &chain, "--key", &f, "--ca", &root])
        }
        "issuer-not-ca" => {
            // A leaf signed by another leaf's key, as if that leaf were a CA.
            let fake_issuer = Ca {
                params: LeafSpec {
                    cn: "not-a-ca.example".to_owned(),
                    ..LeafSpec::server()
                }
                .params(),
                key: KeyPair::generate().expect("key"),
                pem: String::new(),
                der: Vec::new(),
            };
            let fake_cert = fake_issuer
                .params
                .signed_by(&fake_issuer.key, &pki.int.issuer())
                .expect("leaf-as-ca");
            let leaf = fake_issuer.leaf(&LeafSpec::server());
            let f = pki.write(
                "below-leaf.pem",
                format!("{}{}{}", leaf.pem, fake_cert.pem(), pki.int.pem),
            );
            s(&["--cert", &f, "--ca", &root])
        }
        "path-length-exceeded" => {
            let sub = pki.int.intermediate("Fixture Sub CA", None);
            let leaf = sub.leaf(&LeafSpec::server());
            let f = pki.write(
                "too-deep.pem",
                format!("{}{}{}", leaf.pem, sub.pem, pki.int.pem),
            );
            s(&["--cert", &f, "--ca", &root])
        }
        "duplicate-certificate" => {
            let f = pki.write(
                "dup.pem",
                format!("{}{}{}", pki.leaf.pem, pki.int.pem, pki.int.pem),
            );
            s(&["--cert", &f, "--ca", &root])
        }
        "root-in-chain" => {
            let f = pki.write(
                "with-root.pem",
                format!("{}{}{}", pki.leaf.pem, pki.int.pem, pki.root.pem),
            );
            s(&["--cert", &f, "--ca", &root])
        }
        "weak-key" => {
            let spki = rsa1024_spki(dir);
            let leaf = pki.int.leaf_for_spki(&LeafSpec::server(), &spki);
            let f = pki.write("weak.pem", format!("{}{}", leaf.pem, pki.int.pem));
            s(&["--cert", &f, "--ca", &root])
        }
        "signature-invalid" => {
            let impostor = pki.int.impostor();
            let leaf = impostor.leaf(&LeafSpec::server());
            let f = pki.write("forged.pem", format!("{}{}", leaf.pem, pki.int.pem));
            s(&["--cert", &f, "--ca", &root])
        }
        other => panic!("no chain fixture for {other}"),
    }
}

/// The `doctor chain` codes with a fixture, each with whether its finding is an error (exit 1).
pub const CHAIN_CODES: &[(&str, bool)] = &[
    ("pem-invalid", true),
    ("private-key-in-cert-file", true),
    ("missing-intermediate", true),
    ("chain-order", true),
    ("untrusted-root", true),
    ("self-signed-leaf", true),
    ("expired", true),
    ("not-yet-valid", true),
    ("hostname-mismatch", true),
    ("wrong-purpose", true),
    ("key-mismatch", true),
    ("issuer-not-ca", true),
    ("path-length-exceeded", true),
    ("duplicate-certificate", false),
    ("root-in-chain", false),
    ("weak-key", true),
    ("signature-invalid", true),
];

/// Garbage a `--cert` file may hold; each must be `pem-invalid`, not a crash.
pub fn garbage_cases(dir: &Path, pki: &Pki) -> Vec<(&'static str, String)> {
    let good = &pki.leaf.pem;
    // A base64 body with a character that base64 does not have.
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[3].replace_range(5..6, "!");
    let bad_b64 = lines.join("\n") + "\n";
    let truncated: String = good.lines().take(5).collect::<Vec<_>>().join("\n") + "\n";
    let wrong_header = good.replace("CERTIFICATE", "CERTIFCATE");
    let mut random = vec![0u8; 700];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8 ^ 0x9c;
    }
    vec![
        ("empty", write(dir, "empty.pem", "")),
        ("text", write(dir, "text.pem", "hello, I am not PEM\n")),
        ("bad-base64", write(dir, "bad-b64.pem", bad_b64)),
        ("truncated", write(dir, "truncated.pem", truncated)),
        ("wrong-header", write(dir, "wrong-header.pem", wrong_header)),
        ("der", write(dir, "cert.der", &pki.leaf.der)),
        ("binary", write(dir, "random.bin", random)),
        (
            "csr-header",
            write(
                dir,
                "csr.pem",
                good.replace("CERTIFICATE", "CERTIFICATE REQUEST"),
            ),
        ),
    ]
}
