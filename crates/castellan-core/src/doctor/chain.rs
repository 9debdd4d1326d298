//! Judging a certificate chain: the file a server or client presents (or the chain a TLS endpoint sent),
//! against a CA file, for a purpose and a host name, with an optional private key.
//!
//! The path is built by the doctor itself, matching each certificate's issuer name and authority key
//! identifier against the subject names and subject key identifiers of the certificates presented and
//! trusted, and checking each signature. That is how it tells a missing intermediate from a wrong root
//! from a wrong intermediate, which rustls-webpki reports alike as `UnknownIssuer`. webpki then runs as
//! a backstop: a chain it refuses for a reason no other check named gets `verification-failed`.
//!
//! Trust is judged strictly, the way a client that trusts only the root does: the anchors are the
//! self-issued certificates of the CA file (all of its certificates when it holds no root). An
//! intermediate that only the CA file supplies counts as missing from what is presented, because a
//! client given `root.pem` alone would fail.

use std::net::IpAddr;

use rcgen::PublicKeyData;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::input::{KeyMaterial, read_certs, read_key};
use super::{DAY, Finding, Input, Severity, codes, key_id, span, when};
use crate::pki::Purpose;

/// What `doctor chain` judges.
#[derive(Debug, Clone, Copy)]
pub struct ChainRequest<'a> {
    /// The certificate file: the leaf, optionally followed by its intermediates (what is presented).
    pub cert: Input<'a>,
    /// The private key file that should belong to the leaf.
    pub key: Option<Input<'a>>,
    /// The CA file a peer trusts (a root, or a bundle of root and intermediates).
    pub ca: Option<Input<'a>>,
    /// The name a client connects to (DNS name or IP address).
    pub host: Option<&'a str>,
    /// What the leaf is for; `None` accepts any purpose the leaf declares.
    pub purpose: Option<Purpose>,
    /// Now, Unix seconds.
    pub now: i64,
}

/// Judges a certificate file (and key and CA files), as `doctor chain` does.
pub fn check_chain(req: &ChainRequest<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let presented = read_certs(&req.cert, &mut out);
    let trusted = req.ca.map(|ca| (ca.name, read_certs(&ca, &mut out)));
    let key = req
        .key
        .and_then(|k| read_key(&k, &mut out).map(|m| (k.name, m)));
    if presented.is_empty() {
        return out;
    }
    let ctx = Ctx {
        presenter: Presenter::File(req.cert.name),
        ca_name: req.ca.map(|c| c.name),
        host: req.host,
        purpose: req.purpose,
        now: req.now,
    };
    judge(
        &ctx,
        &presented,
        trusted.as_ref().map(|(_, t)| t.as_slice()),
        key.as_ref().map(|(n, m)| (*n, m)),
        &mut out,
    );
    out
}

/// Judges the chain a TLS endpoint presented (DER, in the order sent), as a client that trusts the CA
/// file (when given) would, for `purpose` and `host`.
pub fn check_presented(
    endpoint: &str,
    presented: &[Vec<u8>],
    ca: Option<Input<'_>>,
    host: Option<&str>,
    purpose: Purpose,
    now: i64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let trusted = ca.map(|c| read_certs(&c, &mut out));
    let mut usable = Vec::new();
    for (i, der) in presented.iter().enumerate() {
        if X509Certificate::from_der(der).is_ok() {
            usable.push(der.clone());
        } else {
            out.push(Finding::error(
                codes::PEM_INVALID,
                endpoint,
                format!(
                    "certificate {} that {endpoint} presents is not a readable X.509 certificate",
                    i + 1
                ),
                "check the certificate file the server is configured with".to_owned(),
            ));
        }
    }
    if usable.is_empty() {
        out.push(Finding::error(
            codes::PEM_INVALID,
            endpoint,
            format!("{endpoint} presented no usable certificate"),
            "configure the server with its certificate chain (chain.pem)".to_owned(),
        ));
        return out;
    }
    let ctx = Ctx {
        presenter: Presenter::Endpoint(endpoint),
        ca_name: ca.map(|c| c.name),
        host,
        purpose: Some(purpose),
        now,
    };
    judge(&ctx, &usable, trusted.as_deref(), None, &mut out);
    out
}

/// Who presents the chain: a file, or a TLS endpoint.
#[derive(Debug, Clone, Copy)]
enum Presenter<'a> {
    File(&'a str),
    Endpoint(&'a str),
}

impl Presenter<'_> {
    fn name(&self) -> &str {
        match self {
            Presenter::File(n) | Presenter::Endpoint(n) => n,
        }
    }
}

struct Ctx<'a> {
    presenter: Presenter<'a>,
    ca_name: Option<&'a str>,
    host: Option<&'a str>,
    purpose: Option<Purpose>,
    now: i64,
}

impl Ctx<'_> {
    /// Who verifies this certificate: servers for a client certificate, clients otherwise.
    fn peers(&self) -> &'static str {
        match self.purpose {
            Some(Purpose::Client) => "servers",
            Some(Purpose::Peer) => "peers",
            _ => "clients",
        }
    }

    /// The subject of findings about a certificate: the presenter, or the CA file it came from.
    fn subject_of(&self, c: &Cert) -> String {
        match c.origin {
            Origin::Presented(_) => self.presenter.name().to_owned(),
            Origin::Trusted(_) => self.ca_name.unwrap_or("CA file").to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Index in the presented list.
    Presented(usize),
    /// Index in the CA file.
    Trusted(usize),
}

/// The public key of a certificate, as far as the doctor cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyKind {
    Rsa(usize),
    Ec(Option<String>),
    Ed25519,
    Other(String),
}

/// What the doctor needs to know about one certificate.
struct Cert {
    der: Vec<u8>,
    origin: Origin,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    /// Display form of the subject DN.
    subject: String,
    /// Display form of the issuer DN.
    issuer: String,
    common_name: Option<String>,
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
    is_ca: bool,
    path_len: Option<u32>,
    /// `Some(false)` when keyUsage is present without keyCertSign.
    key_cert_sign: Option<bool>,
    not_before: i64,
    not_after: i64,
    key: KeyKind,
    sig_alg: String,
    /// EKU: (serverAuth, clientAuth), `None` without the extension.
    eku: Option<(bool, bool)>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl Cert {
    fn parse(der: &[u8], origin: Origin) -> Option<Cert> {
        let (_, x) = X509Certificate::from_der(der).ok()?;
        let mut c = Cert {
            der: der.to_vec(),
            origin,
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            subject: dn_display(&x.subject().to_string()),
            issuer: dn_display(&x.issuer().to_string()),
            common_name: x
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ski: None,
            aki: None,
            is_ca: false,
            path_len: None,
            key_cert_sign: None,
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
            key: key_kind(x.public_key()),
            sig_alg: x.signature_algorithm.algorithm.to_id_string(),
            eku: None,
            dns: Vec::new(),
            ips: Vec::new(),
        };
        for ext in x.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => c.ski = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    c.aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                ParsedExtension::BasicConstraints(bc) => {
                    c.is_ca = bc.ca;
                    c.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => c.key_cert_sign = Some(ku.key_cert_sign()),
                ParsedExtension::ExtendedKeyUsage(e) => {
                    c.eku = Some((e.server_auth, e.client_auth))
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        match n {
                            GeneralName::DNSName(d) => c.dns.push((*d).to_owned()),
                            GeneralName::IPAddress(b) => {
                                if let Ok(a) = <[u8; 4]>::try_from(*b) {
                                    c.ips.push(IpAddr::from(a));
                                } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                                    c.ips.push(IpAddr::from(a));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(c)
    }

    fn self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// `` `DN` (key id AB:CD…) ``
    fn describe(&self) -> String {
        match &self.ski {
            Some(k) => format!("`{}` (key id {})", self.subject, key_id(k)),
            None => format!("`{}`", self.subject),
        }
    }

    /// The issuer as this certificate names it: `` `DN` (key id AB:CD…) ``.
    fn describe_issuer(&self) -> String {
        match &self.aki {
            Some(k) => format!("`{}` (key id {})", self.issuer, key_id(k)),
            None => format!("`{}`", self.issuer),
        }
    }

    fn short(&self) -> String {
        format!(
            "`{}`",
            self.common_name
                .clone()
                .unwrap_or_else(|| self.subject.clone())
        )
    }
}

/// x509-parser prints `CN=a, O=b`; keep it, but never empty.
fn dn_display(s: &str) -> String {
    if s.is_empty() {
        "(empty name)".to_owned()
    } else {
        s.to_owned()
    }
}

fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa(bits(rsa.modulus)),
        Ok(PublicKey::EC(_)) => KeyKind::Ec(
            spki.algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string()),
        ),
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => KeyKind::Ed25519,
        Ok(PublicKey::DSA(_)) => KeyKind::Other("DSA".to_owned()),
        _ => KeyKind::Other(spki.algorithm.algorithm.to_id_string()),
    }
}

/// The bit length of a big-endian unsigned integer.
fn bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => {
            let lead = 8 - bytes[i].leading_zeros() as usize;
            (bytes.len() - i - 1) * 8 + lead
        }
        None => 0,
    }
}

const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P521: &str = "1.3.132.0.35";

/// Signature algorithms clients refuse: MD2, MD5 and SHA-1 based.
fn weak_sig_alg(oid: &str) -> Option<&'static str> {
    match oid {
        "1.2.840.113549.1.1.2" => Some("MD2 with RSA"),
        "1.2.840.113549.1.1.4" => Some("MD5 with RSA"),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => Some("SHA-1 with RSA"),
        "1.2.840.10045.4.1" => Some("ECDSA with SHA-1"),
        "1.2.840.10040.4.3" => Some("DSA with SHA-1"),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Valid,
    Invalid,
    Unsupported,
}

/// Whether `child`'s signature verifies with `issuer`'s public key (x509-parser on aws-lc-rs).
fn signature(child: &Cert, issuer: &Cert) -> Sig {
    let (Ok((_, c)), Ok((_, i))) = (
        X509Certificate::from_der(&child.der),
        X509Certificate::from_der(&issuer.der),
    ) else {
        return Sig::Unsupported;
    };
    match c.verify_signature(Some(i.public_key())) {
        Ok(()) => Sig::Valid,
        Err(X509Error::SignatureVerificationError) => Sig::Invalid,
        Err(_) => Sig::Unsupported,
    }
}

/// `issuer` is the certificate `child` names as its issuer: same name, and the key ids agree when
/// both are present.
fn names_issuer(issuer: &Cert, child: &Cert) -> bool {
    issuer.subject_raw == child.issuer_raw
        && match (&child.aki, &issuer.ski) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        }
}

/// Same name as `child`'s issuer, but a different key id.
fn same_name_other_key(candidate: &Cert, child: &Cert) -> bool {
    candidate.subject_raw == child.issuer_raw
        && matches!((&child.aki, &candidate.ski), (Some(a), Some(s)) if a != s)
}

/// The same certificate, or the same name with the same public key (a re-issued root).
fn same_ca(a: &Cert, b: &Cert) -> bool {
    if a.der == b.der {
        return true;
    }
    let spki = |c: &Cert| {
        X509Certificate::from_der(&c.der)
            .ok()
            .map(|(_, x)| x.public_key().raw.to_vec())
    };
    a.subject_raw == b.subject_raw && spki(a).is_some() && spki(a) == spki(b)
}

/// How the walk up from the leaf ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At a trust anchor of the CA file.
    Anchor,
    /// At a self-signed certificate (index into `all`).
    SelfSigned(usize),
    /// The issuer of the last certificate is nowhere.
    Missing,
}

fn judge(
    ctx: &Ctx<'_>,
    presented_der: &[Vec<u8>],
    trusted_der: Option<&[Vec<u8>]>,
    key: Option<(&str, &KeyMaterial)>,
    out: &mut Vec<Finding>,
) {
    let pname = ctx.presenter.name().to_owned();
    let ca_name = ctx.ca_name.unwrap_or("the CA file");

    // Parse, dropping exact duplicates of the presented list.
    let mut all: Vec<Cert> = Vec::new();
    for (i, der) in presented_der.iter().enumerate() {
        if let Some(first) = presented_der[..i].iter().position(|d| d == der) {
            let dup = Cert::parse(der, Origin::Presented(i));
            out.push(Finding::warning(
                codes::DUPLICATE_CERTIFICATE,
                &pname,
                format!(
                    "certificate {} of {pname} ({}) is the same as certificate {}: sent twice",
                    i + 1,
                    dup.map(|c| c.short()).unwrap_or_default(),
                    first + 1
                ),
                format!("remove the second copy from {pname}"),
            ));
            continue;
        }
        if let Some(c) = Cert::parse(der, Origin::Presented(i)) {
            all.push(c);
        }
    }
    let presented_count = all.len();
    if presented_count == 0 {
        return;
    }
    let have_trust = trusted_der.is_some_and(|t| !t.is_empty());
    if let Some(t) = trusted_der {
        for (i, der) in t.iter().enumerate() {
            if let Some(c) = Cert::parse(der, Origin::Trusted(i)) {
                all.push(c);
            }
        }
    }
    let trusted: Vec<usize> = (presented_count..all.len()).collect();
    let roots: Vec<usize> = trusted
        .iter()
        .copied()
        .filter(|&i| all[i].self_issued())
        .collect();
    let anchors: Vec<usize> = if roots.is_empty() {
        trusted.clone()
    } else {
        roots
    };

    // The leaf: the first presented certificate, unless it issued another presented one.
    let issues_another = |i: usize| {
        (0..presented_count)
            .any(|j| j != i && !all[j].self_issued() && names_issuer(&all[i], &all[j]))
    };
    let mut leaf = 0;
    if issues_another(0)
        && let Some(real) = (0..presented_count).find(|&i| !issues_another(i) && !all[i].is_ca)
    {
        leaf = real;
        out.push(Finding::error(
            codes::CHAIN_ORDER,
            &pname,
            format!(
                "{pname} starts with the CA certificate {} instead of the server's own \
                 certificate {}: the leaf must come first, and most TLS stacks pair the \
                 private key with the first certificate",
                all[0].short(),
                all[real].short()
            ),
            format!(
                "reorder {pname}: the leaf {} first, then its issuer, then that issuer's \
                 issuer",
                all[real].short()
            ),
        ));
    }

    // Walk up from the leaf.
    let mut path: Vec<usize> = vec![leaf];
    let mut borrowed: Vec<usize> = Vec::new();
    let end = loop {
        let cur = *path.last().unwrap_or(&leaf);
        let c = &all[cur];
        if c.self_issued() && signature(c, c) != Sig::Invalid {
            break End::SelfSigned(cur);
        }
        let candidates: Vec<usize> = (0..all.len())
            .filter(|&i| !path.contains(&i) && names_issuer(&all[i], c))
            .collect();
        let verified = |i: &usize| signature(c, &all[*i]) != Sig::Invalid;
        let pick = candidates
            .iter()
            .filter(|&&i| i < presented_count)
            .find(|i| verified(i))
            .or_else(|| {
                candidates
                    .iter()
                    .filter(|&&i| i >= presented_count)
                    .find(|i| verified(i))
            })
            .or_else(|| candidates.first())
            .copied();
        match pick {
            None => break End::Missing,
            Some(i) if i < presented_count => path.push(i),
            Some(i) => {
                path.push(i);
                if anchors.contains(&i) {
                    break End::Anchor;
                }
                borrowed.push(i);
            }
        }
    };

    // Intermediates out of order (the leaf itself was handled above).
    let presented_in_path: Vec<usize> = path
        .iter()
        .copied()
        .filter(|&i| i < presented_count)
        .collect();
    if leaf == 0 && presented_in_path.windows(2).any(|w| w[1] < w[0]) {
        out.push(Finding::warning(
            codes::CHAIN_ORDER,
            &pname,
            format!(
                "the certificates of {pname} are not in order: each certificate should be followed \
                 by the one that issued it (leaf, intermediate, …); older clients and some \
                 brokers give up on a shuffled chain"
            ),
            format!(
                "reorder {pname}: {}",
                presented_in_path
                    .iter()
                    .map(|&i| all[i].short())
                    .collect::<Vec<_>>()
                    .join(", then ")
            ),
        ));
    }

    // Presented certificates that are not on the path.
    for i in 0..presented_count {
        if !path.contains(&i) {
            out.push(Finding::warning(
                codes::UNRELATED_CERTIFICATE,
                &pname,
                format!(
                    "{pname} holds {}, which is not part of the chain of {}",
                    all[i].describe(),
                    all[leaf].short()
                ),
                format!("remove it from {pname}, or check that the right files were concatenated"),
            ));
        }
    }

    let leaf_c = &all[leaf];
    let leaf_self_signed = matches!(end, End::SelfSigned(i) if i == leaf);

    // How the walk ended: trust.
    match end {
        End::Anchor => {}
        End::SelfSigned(i) if i == leaf => {
            let pinned = trusted.iter().any(|&t| same_ca(&all[t], leaf_c));
            let (sev, msg) = if pinned {
                (
                    Severity::Warning,
                    format!(
                        "{} is self-signed; it works only for clients that pin this exact \
                         certificate (as {ca_name} does)",
                        leaf_c.short()
                    ),
                )
            } else {
                (
                    Severity::Error,
                    format!(
                        "{} is self-signed: no CA vouches for it, so clients fail with OpenSSL's \
                         `self-signed certificate` (Python: `CERTIFICATE_VERIFY_FAILED`)",
                        leaf_c.short()
                    ),
                )
            };
            out.push(Finding::new(
                codes::SELF_SIGNED_LEAF,
                sev,
                &pname,
                msg,
                "issue the certificate from your CA (castellan pki issue --profile server …) and \
                 give clients that CA's root",
            ));
        }
        End::SelfSigned(i) => {
            let root = &all[i];
            if i < presented_count {
                out.push(Finding::info(
                    codes::ROOT_IN_CHAIN,
                    &pname,
                    format!(
                        "{pname} includes the root {}; clients ignore it (they must already \
                         trust it), so it only costs bytes",
                        root.short()
                    ),
                    format!(
                        "optional: drop the root from {pname} (chain.pem is leaf + intermediates)"
                    ),
                ));
            }
            if have_trust && !trusted.iter().any(|&t| same_ca(&all[t], root)) {
                let known = anchors
                    .iter()
                    .map(|&a| all[a].describe())
                    .collect::<Vec<_>>()
                    .join(", ");
                let wording = if i < presented_count {
                    "`self-signed certificate in certificate chain`"
                } else {
                    "`unable to get local issuer certificate`"
                };
                out.push(Finding::error(
                    codes::UNTRUSTED_ROOT,
                    ctx.subject_of(root),
                    format!(
                        "the chain ends in the root {}, which {ca_name} does not contain (it \
                         trusts {known}): clients fail with OpenSSL's {wording} (Python: \
                         `CERTIFICATE_VERIFY_FAILED`; brokers send the `unknown ca` alert)",
                        root.describe()
                    ),
                    format!(
                        "give clients the root that issued this chain (add {} to {ca_name}), or \
                         issue the certificate from the CA the clients trust",
                        root.short()
                    ),
                ));
            }
        }
        End::Missing => {
            let top = &all[*path.last().unwrap_or(&leaf)];
            let other_key = (0..all.len()).find(|&i| same_name_other_key(&all[i], top));
            if let Some(o) = other_key.filter(|_| have_trust) {
                out.push(Finding::error(
                    codes::UNTRUSTED_ROOT,
                    ctx.subject_of(&all[o]),
                    format!(
                        "{} was issued by {}, but {ca_name} holds a different CA with that name, \
                         {}: the CA was re-created (or the files come from two installations), so \
                         clients fail with OpenSSL's `unable to get local issuer certificate` \
                         (Python: `CERTIFICATE_VERIFY_FAILED`; brokers send `unknown ca`)",
                        top.short(),
                        top.describe_issuer(),
                        all[o].describe()
                    ),
                    format!(
                        "use the CA file of the CA that issued {} (castellan pki ca --out DIR), \
                         or re-issue the certificate from the current CA",
                        top.short()
                    ),
                ));
            } else if path.len() == 1 {
                // Nothing above the leaf at all: the intermediate is missing.
                let sev = if have_trust {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                let roots = anchors
                    .iter()
                    .map(|&a| all[a].short())
                    .collect::<Vec<_>>()
                    .join(", ");
                let where_ = if have_trust {
                    format!("neither in {pname} nor in {ca_name} (which holds {roots})")
                } else {
                    format!("not in {pname} (and no CA file was given to look in)")
                };
                out.push(Finding::new(
                    codes::MISSING_INTERMEDIATE,
                    sev,
                    &pname,
                    format!(
                        "{} was issued by {}, which is {where_}: {} fail with OpenSSL's `unable \
                         to get local issuer certificate` (Python: `CERTIFICATE_VERIFY_FAILED`; \
                         brokers send `unknown ca`)",
                        leaf_c.short(),
                        leaf_c.describe_issuer(),
                        ctx.peers()
                    ),
                    missing_fix(ctx, &format!("`{}`", leaf_c.issuer)),
                ));
            } else if have_trust {
                let known = anchors
                    .iter()
                    .map(|&a| all[a].describe())
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(Finding::error(
                    codes::UNTRUSTED_ROOT,
                    ctx.subject_of(top),
                    format!(
                        "the chain leads to {}, which {ca_name} does not contain (it trusts \
                         {known}): clients fail with OpenSSL's `unable to get issuer \
                         certificate` / `unable to get local issuer certificate` (Python: \
                         `CERTIFICATE_VERIFY_FAILED`; brokers send `unknown ca`)",
                        top.describe_issuer()
                    ),
                    format!(
                        "give clients the root of this chain ({}) in {ca_name}, or issue the \
                         certificate from the CA they trust",
                        top.describe_issuer()
                    ),
                ));
            }
        }
    }

    // Intermediates only the CA file supplied: missing from what is presented.
    if let Some(&first) = borrowed.first() {
        let names = borrowed
            .iter()
            .map(|&b| all[b].describe())
            .collect::<Vec<_>>()
            .join(", ");
        let below = path
            .iter()
            .position(|&p| p == first)
            .and_then(|p| p.checked_sub(1))
            .map_or(leaf, |p| path[p]);
        out.push(Finding::error(
            codes::MISSING_INTERMEDIATE,
            &pname,
            format!(
                "{pname} does not include the intermediate {names} that issued {}: {peers} given \
                 the whole bundle {ca_name} get by, but {peers} that trust only the root fail \
                 with OpenSSL's `unable to get local issuer certificate` (Python: \
                 `CERTIFICATE_VERIFY_FAILED`; brokers send `unknown ca`)",
                all[below].short(),
                peers = ctx.peers()
            ),
            missing_fix(ctx, &names),
        ));
    }

    if !have_trust && !leaf_self_signed {
        out.push(Finding::info(
            codes::TRUST_NOT_CHECKED,
            &pname,
            "no CA file was given, so whether clients trust this chain was not checked",
            "pass --ca with the file your clients trust (root.pem or ca-bundle.pem)",
        ));
    }

    // Per-certificate checks along the path.
    for (pos, &i) in path.iter().enumerate() {
        let c = &all[i];
        let subj = ctx.subject_of(c);
        let role = if pos == 0 {
            "the certificate".to_owned()
        } else if c.self_issued() {
            "the root".to_owned()
        } else {
            "the intermediate CA".to_owned()
        };
        if ctx.now > c.not_after {
            out.push(Finding::error(
                codes::EXPIRED,
                &subj,
                format!(
                    "{role} {} expired {} ago (notAfter {}): {} fail with OpenSSL's \
                     `certificate has expired` (Python: `CERTIFICATE_VERIFY_FAILED`; brokers send \
                     `certificate expired`)",
                    c.short(),
                    span(ctx.now - c.not_after),
                    when(c.not_after),
                    ctx.peers()
                ),
                if pos == 0 {
                    "issue a new certificate and install it (castellan pki issue, or let castellan \
                     agent renew it)"
                        .to_owned()
                } else {
                    format!("renew the CA certificate {} and redistribute it", c.short())
                },
            ));
        } else if ctx.now < c.not_before {
            out.push(Finding::error(
                codes::NOT_YET_VALID,
                &subj,
                format!(
                    "{role} {} is not valid before {} ({} from now): {} fail with OpenSSL's \
                     `certificate is not yet valid`; is a clock wrong (this machine's, or the \
                     issuer's)?",
                    c.short(),
                    when(c.not_before),
                    span(c.not_before - ctx.now),
                    ctx.peers()
                ),
                "check the clocks (timedatectl; NTP) of this machine and of the CA, or wait until \
                 the certificate becomes valid",
            ));
        } else if c.not_after - ctx.now
            < (7 * DAY).min(c.not_after.saturating_sub(c.not_before) / 3)
        {
            // Within a week of its end, or in the last third of a shorter life (where an agent renews
            // it): a certificate of a day is not "expiring" for its whole life.
            out.push(Finding::warning(
                codes::EXPIRING_SOON,
                &subj,
                format!(
                    "{role} {} expires in {} ({})",
                    c.short(),
                    span(c.not_after - ctx.now),
                    when(c.not_after)
                ),
                "renew it now (castellan agent renews automatically)",
            ));
        }
        match &c.key {
            KeyKind::Rsa(b) if *b < 2048 => out.push(Finding::error(
                codes::WEAK_KEY,
                &subj,
                format!(
                    "{role} {} has a {b}-bit RSA key: rustls, Go, browsers and OpenSSL at its \
                     default security level refuse keys under 2048 bits (OpenSSL: `ee key too \
                     small` / `ca key too small`)",
                    c.short()
                ),
                "issue a new certificate with a P-256 key (the default) or RSA of 2048 bits or \
                 more",
            )),
            KeyKind::Ec(Some(curve)) if curve != P256 && curve != P384 && curve != P521 => out
                .push(Finding::error(
                    codes::WEAK_KEY,
                    &subj,
                    format!(
                        "{role} {} has an elliptic-curve key on curve {curve}, which TLS clients \
                         do not support (only P-256, P-384 and P-521)",
                        c.short()
                    ),
                    "issue a new certificate with a P-256 key",
                )),
            KeyKind::Other(kind) => out.push(Finding::error(
                codes::WEAK_KEY,
                &subj,
                format!(
                    "{role} {} has a {kind} key, which TLS clients do not accept",
                    c.short()
                ),
                "issue a new certificate with a P-256, Ed25519 or RSA (≥ 2048-bit) key",
            )),
            _ => {}
        }
        let self_signed_here = matches!(end, End::SelfSigned(s) if s == i);
        if !self_signed_here && let Some(alg) = weak_sig_alg(&c.sig_alg) {
            out.push(Finding::error(
                codes::WEAK_SIGNATURE,
                &subj,
                format!(
                    "{role} {} is signed with {alg}, which rustls, browsers and current \
                     OpenSSL refuse (OpenSSL: `ca md too weak`)",
                    c.short()
                ),
                "re-issue it with a SHA-256 (or stronger) signature",
            ));
        }
        // Checks on the issuer of this certificate.
        if let Some(&up) = path.get(pos + 1) {
            let issuer = &all[up];
            if !issuer.is_ca {
                out.push(Finding::error(
                    codes::ISSUER_NOT_CA,
                    ctx.subject_of(issuer),
                    format!(
                        "{} was issued by {}, which is not a CA certificate (no basicConstraints \
                         CA:TRUE): clients refuse the chain (OpenSSL: `invalid CA certificate`; \
                         rustls: `CaUsedAsEndEntity`/`UnknownIssuer`)",
                        c.short(),
                        issuer.describe()
                    ),
                    format!(
                        "issue {} from a real CA (castellan pki issue), not from another leaf \
                         certificate",
                        c.short()
                    ),
                ));
            } else if issuer.key_cert_sign == Some(false) {
                out.push(Finding::error(
                    codes::ISSUER_NOT_CA,
                    ctx.subject_of(issuer),
                    format!(
                        "{} was issued by {}, whose keyUsage does not allow signing certificates \
                         (no keyCertSign)",
                        c.short(),
                        issuer.describe()
                    ),
                    "re-create the CA certificate with keyUsage keyCertSign, cRLSign",
                ));
            }
            if let Some(max) = issuer.path_len {
                // CA certificates between it and the leaf (self-issued ones do not count, RFC 5280).
                let below = path[1..=pos]
                    .iter()
                    .filter(|&&i| all[i].is_ca && !all[i].self_issued())
                    .count();
                let below = u32::try_from(below).unwrap_or(u32::MAX);
                if below > max {
                    out.push(Finding::error(
                        codes::PATH_LENGTH_EXCEEDED,
                        ctx.subject_of(issuer),
                        format!(
                            "{} allows {max} CA certificate(s) below it (pathLenConstraint {max}) \
                             but {below} are below it on the way to {}: clients refuse the chain \
                             (OpenSSL: `path length constraint exceeded`)",
                            issuer.describe(),
                            leaf_c.short()
                        ),
                        format!(
                            "issue {} directly from {} (a CA with pathLenConstraint 0 may sign \
                             leaves only), or re-create that CA with a larger path length",
                            leaf_c.short(),
                            issuer.short()
                        ),
                    ));
                }
            }
            let weak_issuer_key = matches!(issuer.key, KeyKind::Rsa(b) if b < 2048);
            if signature(c, issuer) == Sig::Invalid && !weak_issuer_key {
                out.push(Finding::error(
                    codes::SIGNATURE_INVALID,
                    &subj,
                    format!(
                        "signature verification failed: {} names {} as its issuer (name and key id \
                         match) but its signature does not verify with that key (OpenSSL: \
                         `certificate signature failure`): the certificate was altered, or the CA \
                         was re-created with the same name and key id",
                        c.short(),
                        issuer.describe()
                    ),
                    "get the certificate again from the CA that issued it, and the CA certificate \
                     from the same CA",
                ));
            }
            // EKU restrictions on CAs.
            if let (Some(p), Some((srv, cli))) = (ctx.purpose, issuer.eku)
                && ((p.server_auth() && !srv) || (p.client_auth() && !cli))
            {
                out.push(Finding::error(
                    codes::WRONG_PURPOSE,
                    ctx.subject_of(issuer),
                    format!(
                        "the CA {} restricts the certificates below it to other purposes \
                         (its extendedKeyUsage lacks {}): clients refuse {} for {p}",
                        issuer.short(),
                        if p.server_auth() && !srv {
                            "serverAuth"
                        } else {
                            "clientAuth"
                        },
                        leaf_c.short()
                    ),
                    "use a CA whose extendedKeyUsage includes the purpose (or has none)",
                ));
            }
        }
    }

    // The leaf's own purpose.
    let purpose_name = |p: Purpose| match p {
        Purpose::Server => "a TLS server (serverAuth)",
        Purpose::Client => "a TLS client (clientAuth)",
        Purpose::Peer => "both TLS server and client",
    };
    if let Some(p) = ctx.purpose {
        if let Some((srv, cli)) = leaf_c.eku {
            let missing = match (p.server_auth() && !srv, p.client_auth() && !cli) {
                (true, true) => Some("serverAuth and clientAuth"),
                (true, false) => Some("serverAuth"),
                (false, true) => Some("clientAuth"),
                _ => None,
            };
            if let Some(missing) = missing {
                let has = match (srv, cli) {
                    (true, _) => "serverAuth only",
                    (_, true) => "clientAuth only",
                    _ => "neither serverAuth nor clientAuth",
                };
                out.push(Finding::error(
                    codes::WRONG_PURPOSE,
                    &pname,
                    format!(
                        "{} is not valid for {} — its extendedKeyUsage has {has}, no {missing}: \
                         OpenSSL says `unsupported certificate purpose`, rustls \
                         `InvalidPurpose`",
                        leaf_c.short(),
                        purpose_name(p)
                    ),
                    format!(
                        "issue it with the right profile: castellan pki issue --profile {} (or \
                         peer for both)",
                        if p.server_auth() { "server" } else { "client" }
                    ),
                ));
            }
        }
        if leaf_c.is_ca && !leaf_self_signed {
            out.push(Finding::error(
                codes::WRONG_PURPOSE,
                &pname,
                format!(
                    "{} is a CA certificate (basicConstraints CA:TRUE) used as {}'s own \
                     certificate: clients refuse it (rustls: `CaUsedAsEndEntity`)",
                    leaf_c.short(),
                    ctx.presenter.name()
                ),
                "present a leaf certificate issued by the CA, not the CA certificate itself",
            ));
        }
    } else if let Some((false, false)) = leaf_c.eku {
        out.push(Finding::warning(
            codes::WRONG_PURPOSE,
            &pname,
            format!(
                "{} is valid neither for TLS servers nor for TLS clients (its extendedKeyUsage has \
                 neither serverAuth nor clientAuth)",
                leaf_c.short()
            ),
            "issue it with the server, client or peer profile",
        ));
    }

    // Host name.
    if let Some(host) = ctx.host {
        check_host(ctx, leaf_c, host, out);
    }

    // Key.
    if let Some((key_name, material)) = key {
        check_key(
            &pname,
            key_name,
            material,
            &all[..presented_count],
            leaf_c,
            out,
        );
    }

    // Backstop: webpki, strictly, when no error explains a failure already.
    let errors_so_far = out.iter().any(|f| f.severity == Severity::Error);
    // A CA checked as the "leaf" (a store's issuing CA) is no end entity for webpki: its path was
    // checked link by link above.
    if have_trust && !errors_so_far && !leaf_self_signed {
        let verdict = if leaf_c.is_ca {
            Ok(())
        } else {
            webpki_verify(&all, leaf, presented_count, &anchors, ctx)
        };
        if let Err(e) = verdict {
            out.push(Finding::error(
                codes::VERIFICATION_FAILED,
                &pname,
                format!(
                    "rustls-webpki refuses the chain of {} against {ca_name}: {e}",
                    leaf_c.short()
                ),
                "compare the chain with the CA file: openssl verify -CAfile CA -untrusted CHAIN LEAF",
            ));
        } else if end == End::Anchor || matches!(end, End::SelfSigned(_)) {
            let names = path
                .iter()
                .map(|&i| all[i].short())
                .collect::<Vec<_>>()
                .join(" → ");
            out.push(Finding::info(
                codes::CHAIN_OK,
                &pname,
                format!(
                    "the chain verifies against {ca_name}: {names}; the certificate is valid until \
                     {}",
                    when(leaf_c.not_after)
                ),
                "nothing to do",
            ));
        }
    }
}

/// The fix for a missing intermediate: which file must hold it.
fn missing_fix(ctx: &Ctx<'_>, names: &str) -> String {
    match ctx.presenter {
        Presenter::File(f) => format!(
            "append the intermediate CA certificate {names} to {f} after the leaf, i.e. present \
             chain.pem (leaf + intermediates; Castellan writes it beside cert.pem) rather than \
             cert.pem: e.g. `cat cert.pem intermediate.pem > chain.pem` and point the server's \
             certificate option (Mosquitto/EMQX `certfile`, nginx `ssl_certificate`) at chain.pem"
        ),
        Presenter::Endpoint(e) => format!(
            "configure the server at {e} to present chain.pem (leaf + intermediate {names}) \
             instead of the leaf alone: Mosquitto/EMQX `certfile chain.pem`, nginx \
             `ssl_certificate chain.pem`"
        ),
    }
}

fn check_host(ctx: &Ctx<'_>, leaf: &Cert, host: &str, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name();
    let der = CertificateDer::from(leaf.der.as_slice());
    let Ok(ee) = EndEntityCert::try_from(&der) else {
        return;
    };
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => match ServerName::try_from(host) {
            Ok(n) => n,
            Err(_) => {
                out.push(Finding::error(
                    codes::HOSTNAME_MISMATCH,
                    pname,
                    format!("`{host}` is not a valid DNS name or IP address"),
                    "pass the name clients connect to",
                ));
                return;
            }
        },
    };
    if ee.verify_is_valid_for_subject_name(&name).is_ok() {
        return;
    }
    let mut names: Vec<String> = leaf.dns.iter().map(|d| format!("`{d}`")).collect();
    names.extend(leaf.ips.iter().map(|i| format!("`{i}`")));
    let listed = if names.is_empty() {
        match &leaf.common_name {
            Some(cn) => format!(
                "no subject alternative names at all (only the common name `{cn}`, which modern \
                 clients ignore)"
            ),
            None => "no names at all".to_owned(),
        }
    } else {
        format!("only {}", names.join(", "))
    };
    let ip_hint = if host.parse::<IpAddr>().is_ok() {
        " (an IP address must be an IP SAN, not a DNS SAN)"
    } else {
        ""
    };
    out.push(Finding::error(
        codes::HOSTNAME_MISMATCH,
        pname,
        format!(
            "{} is not valid for `{host}`: it names {listed}{ip_hint}; clients fail with OpenSSL's \
             `hostname mismatch` (Python: `CERTIFICATE_VERIFY_FAILED] certificate verify failed: \
             Hostname mismatch`)",
            leaf.short()
        ),
        format!(
            "re-issue the certificate with `{host}` as a SAN (castellan pki issue --{} {host} …), or \
             connect with a name it has",
            if host.parse::<IpAddr>().is_ok() { "ip" } else { "dns" }
        ),
    ));
}

fn spki_matches(pair: &rcgen::KeyPair, cert_der: &[u8]) -> bool {
    let ours = pair.subject_public_key_info();
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return false;
    };
    let Ok((_, a)) = SubjectPublicKeyInfo::from_der(&ours) else {
        return false;
    };
    let b = cert.public_key();
    a.algorithm.algorithm == b.algorithm.algorithm
        && a.subject_public_key.data == b.subject_public_key.data
}

fn check_key(
    pname: &str,
    key_name: &str,
    material: &KeyMaterial,
    presented: &[Cert],
    leaf: &Cert,
    out: &mut Vec<Finding>,
) {
    if spki_matches(&material.pair, &leaf.der) {
        return;
    }
    let other = presented
        .iter()
        .find(|c| c.der != leaf.der && spki_matches(&material.pair, &c.der));
    let hint = match other {
        Some(c) => format!(
            " It is the key of {}, also in {pname}: the certificates are in the wrong order?",
            c.short()
        ),
        None => String::new(),
    };
    out.push(Finding::error(
        codes::KEY_MISMATCH,
        key_name,
        format!(
            "{key_name} is not the private key of {} in {pname}: servers refuse to start with \
             OpenSSL's `key values mismatch` (rustls: `private key does not match certificate`).{hint}",
            leaf.short()
        ),
        format!(
            "use the key that was generated with this certificate, or issue a new certificate \
             and key together (castellan pki issue writes both); compare with `openssl x509 \
             -noout -pubkey -in {pname}` and `openssl pkey -pubout -in {key_name}`"
        ),
    ));
}

fn webpki_verify(
    all: &[Cert],
    leaf: usize,
    presented_count: usize,
    anchors: &[usize],
    ctx: &Ctx<'_>,
) -> Result<(), String> {
    let leaf_der = CertificateDer::from(all[leaf].der.as_slice());
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| e.to_string())?;
    let anchor_ders: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|&a| CertificateDer::from(all[a].der.as_slice()))
        .collect();
    let trust: Vec<_> = anchor_ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let intermediates: Vec<CertificateDer<'_>> = (0..presented_count)
        .filter(|&i| i != leaf)
        .map(|i| CertificateDer::from(all[i].der.as_slice()))
        .collect();
    let secs = u64::try_from(ctx.now).map_err(|_| "the time is before 1970".to_owned())?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    let mut usages = Vec::new();
    match ctx.purpose {
        Some(p) => {
            if p.server_auth() {
                usages.push(KeyUsage::server_auth());
            }
            if p.client_auth() {
                usages.push(KeyUsage::client_auth());
            }
        }
        None => match all[leaf].eku {
            Some((false, true)) => usages.push(KeyUsage::client_auth()),
            Some((false, false)) => {}
            _ => usages.push(KeyUsage::server_auth()),
        },
    }
    for usage in usages {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust,
            &intermediates,
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}
