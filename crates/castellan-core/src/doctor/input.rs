//! Reading the inputs the doctor judges: PEM certificate files and private key files. Anything wrong
//! with them becomes a finding, never an error.

use rustls_pki_types::PrivateKeyDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::{Finding, codes};

/// Something to judge: a name for messages (a path, `host:port`) and its bytes.
///
/// `Debug` shows the name and length only: the bytes may be a private key.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// The file name (or other subject) used in findings.
    pub name: &'a str,
    /// The contents.
    pub bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// An input.
    pub fn new(name: &'a str, bytes: &'a [u8]) -> Self {
        Input { name, bytes }
    }
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .finish()
    }
}

const BEGIN: &str = "-----BEGIN ";

/// Whether DER bytes are one X.509 certificate (and nothing after it).
fn is_der_certificate(der: &[u8]) -> bool {
    matches!(X509Certificate::from_der(der), Ok((rest, _)) if rest.is_empty())
}

/// The PEM blocks of an input, or a `pem-invalid` finding saying why there are none usable. `want`
/// names what the file should hold (for messages), `example` the header expected.
fn blocks(input: &Input<'_>, want: &str, example: &str, out: &mut Vec<Finding>) -> Vec<pem::Pem> {
    let name = input.name;
    let text = match std::str::from_utf8(input.bytes) {
        Ok(t) => t,
        Err(_) => {
            let (message, fix) = if is_der_certificate(input.bytes) {
                (
                    format!(
                        "{name} holds a DER (binary) certificate where PEM text was expected \
                         (OpenSSL: `no start line`)"
                    ),
                    format!("convert it: openssl x509 -inform der -in {name} -out {name}.pem"),
                )
            } else if PrivateKeyDer::try_from(input.bytes).is_ok() {
                (
                    format!("{name} holds a DER (binary) private key where PEM text was expected"),
                    format!("convert it: openssl pkey -inform der -in {name} -out {name}.pem"),
                )
            } else {
                (
                    format!(
                        "{name} is binary data, not PEM text; expected {want} \
                         (OpenSSL: `no start line`)"
                    ),
                    format!("point this option at the PEM file that holds {want}"),
                )
            };
            out.push(Finding::error(codes::PEM_INVALID, name, message, fix));
            return Vec::new();
        }
    };
    if text.trim().is_empty() {
        out.push(Finding::error(
            codes::PEM_INVALID,
            name,
            format!("{name} is empty; expected {want}"),
            format!("write {want} into {name} (a block starting with `{example}`)"),
        ));
        return Vec::new();
    }
    let begins = text.matches(BEGIN).count();
    if begins == 0 {
        out.push(Finding::error(
            codes::PEM_INVALID,
            name,
            format!(
                "{name} has no PEM block (no `{example}` line): OpenSSL says `no start line`; \
                 expected {want}"
            ),
            format!(
                "use the PEM file: it is text starting with `{example}` (a base64 file without \
                 the header lines, or a DER file, must be converted)"
            ),
        ));
        return Vec::new();
    }
    let parsed = match pem::parse_many(text) {
        Ok(p) => p,
        Err(e) => {
            let why = match &e {
                pem::PemError::InvalidData(b) => format!(
                    "the base64 between the BEGIN and END lines is damaged ({b}): a truncated or \
                     edited copy?"
                ),
                pem::PemError::MismatchedTags(b, e) => {
                    format!("a block starts with `BEGIN {b}` but ends with `END {e}`")
                }
                other => format!("a PEM block is malformed ({other})"),
            };
            out.push(Finding::error(
                codes::PEM_INVALID,
                name,
                format!("{name}: {why}"),
                format!("copy {name} again from its source; each block must be intact"),
            ));
            return Vec::new();
        }
    };
    if parsed.len() < begins {
        out.push(Finding::error(
            codes::PEM_INVALID,
            name,
            format!(
                "{name} has {begins} BEGIN lines but only {} complete PEM block(s): a block lacks \
                 its `-----END ...-----` line or is otherwise broken (a truncated copy?)",
                parsed.len()
            ),
            format!("copy {name} again from its source; each block must be intact"),
        ));
    }
    parsed
}

/// The certificates of a PEM file, in order (as DER). Every problem becomes a finding: no PEM, damaged
/// base64, a wrong header, bytes that are not a certificate, a private key in the file.
pub(crate) fn read_certs(input: &Input<'_>, out: &mut Vec<Finding>) -> Vec<Vec<u8>> {
    let name = input.name;
    let blocks = blocks(
        input,
        "PEM certificates",
        "-----BEGIN CERTIFICATE-----",
        out,
    );
    let mut certs = Vec::new();
    let mut key_reported = false;
    for (i, block) in blocks.iter().enumerate() {
        let n = i + 1;
        match block.tag() {
            "CERTIFICATE" => {
                if is_der_certificate(block.contents()) {
                    certs.push(block.contents().to_vec());
                } else {
                    out.push(Finding::error(
                        codes::PEM_INVALID,
                        name,
                        format!(
                            "block {n} of {name} is labeled CERTIFICATE but its contents are not \
                             an X.509 certificate"
                        ),
                        format!("copy {name} again from its source"),
                    ));
                }
            }
            tag if tag.ends_with("PRIVATE KEY") => {
                if !key_reported {
                    key_reported = true;
                    out.push(Finding::error(
                        codes::PRIVATE_KEY_IN_CERT_FILE,
                        name,
                        format!(
                            "{name} holds a private key (`{BEGIN}{tag}-----`) beside the \
                             certificates: certificate files are handed around and often \
                             world-readable, so the key leaks with them"
                        ),
                        format!(
                            "move the key block into its own file with mode 0600 (e.g. key.pem), \
                             remove it from {name}, and consider the key exposed if {name} was \
                             shared"
                        ),
                    ));
                }
            }
            "TRUSTED CERTIFICATE" => out.push(Finding::error(
                codes::PEM_INVALID,
                name,
                format!(
                    "block {n} of {name} is an OpenSSL `TRUSTED CERTIFICATE`, which only OpenSSL \
                     reads; rustls, Go and Java see no certificate"
                ),
                format!("convert it: openssl x509 -in {name} -out {name}.pem"),
            )),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => out.push(Finding::error(
                codes::PEM_INVALID,
                name,
                format!(
                    "block {n} of {name} is a certificate signing request (CSR), not a certificate"
                ),
                "have the CSR signed (castellan pki sign --csr FILE) and use the certificate it \
                 returns"
                    .to_owned(),
            )),
            tag => out.push(Finding::error(
                codes::PEM_INVALID,
                name,
                format!(
                    "block {n} of {name} has the header `{BEGIN}{tag}-----` where \
                     `{BEGIN}CERTIFICATE-----` was expected"
                ),
                format!(
                    "put only certificates in {name}; each block must start with \
                     `{BEGIN}CERTIFICATE-----` exactly"
                ),
            )),
        }
    }
    if certs.is_empty() && !blocks.is_empty() && !out.iter().any(|f| f.subject == name) {
        out.push(Finding::error(
            codes::PEM_INVALID,
            name,
            format!("{name} holds no certificate"),
            format!("put the PEM certificate(s) into {name}"),
        ));
    }
    certs
}

/// A private key read from a file.
pub(crate) struct KeyMaterial {
    /// The key pair (parsed by rcgen on aws-lc-rs).
    pub pair: rcgen::KeyPair,
}

/// The private key of a PEM key file (PKCS#8, SEC1 or PKCS#1), or findings saying why not.
pub(crate) fn read_key(input: &Input<'_>, out: &mut Vec<Finding>) -> Option<KeyMaterial> {
    let name = input.name;
    let blocks = blocks(
        input,
        "a PEM private key",
        "-----BEGIN PRIVATE KEY-----",
        out,
    );
    if blocks.is_empty() {
        return None;
    }
    let keys: Vec<&pem::Pem> = blocks
        .iter()
        .filter(|b| b.tag().ends_with("PRIVATE KEY"))
        .collect();
    let block = match keys.as_slice() {
        [] => {
            let tags: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
            out.push(Finding::error(
                codes::PEM_INVALID,
                name,
                format!(
                    "{name} holds no private key (its blocks: {}); a key block starts with \
                     `{BEGIN}PRIVATE KEY-----`",
                    tags.join(", ")
                ),
                "point the key option at the private key file that belongs to the certificate"
                    .to_owned(),
            ));
            return None;
        }
        [one] => *one,
        many => {
            out.push(Finding::error(
                codes::KEY_INVALID,
                name,
                format!(
                    "{name} holds {} private keys; servers read the first one only",
                    many.len()
                ),
                "keep exactly the one key that belongs to the certificate".to_owned(),
            ));
            return None;
        }
    };
    if block.tag() == "ENCRYPTED PRIVATE KEY" {
        out.push(Finding::warning(
            codes::KEY_INVALID,
            name,
            format!(
                "{name} is encrypted with a passphrase: the doctor cannot check it, and servers \
                 started unattended cannot read it"
            ),
            format!("if the server cannot prompt: openssl pkey -in {name} -out {name}.plain"),
        ));
        return None;
    }
    let der = Zeroizing::new(block.contents().to_vec());
    let parsed = PrivateKeyDer::try_from(der.as_slice())
        .ok()
        .and_then(|k| rcgen::KeyPair::try_from(&k).ok());
    match parsed {
        Some(pair) => Some(KeyMaterial { pair }),
        None => {
            out.push(Finding::error(
                codes::KEY_INVALID,
                name,
                format!(
                    "the `{}` block of {name} is not a private key the doctor can read (RSA of \
                     2048 bits or more, ECDSA P-256/P-384/P-521, or Ed25519)",
                    block.tag()
                ),
                format!("check the key with: openssl pkey -in {name} -noout -text"),
            ));
            None
        }
    }
}

/// Whether a file's contents hold a PEM private key block (for file permission checks).
pub fn holds_private_key(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| pem::parse_many(t).ok())
        .is_some_and(|blocks| blocks.iter().any(|b| b.tag().ends_with("PRIVATE KEY")))
}
