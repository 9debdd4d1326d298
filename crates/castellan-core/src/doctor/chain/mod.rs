//! Judging a certificate chain: the file a server or client presents (or the chain a TLS endpoint sent),
//! against a CA file, for a purpose and a host name, with an optional private key.
//!
//! The path is built by the doctor itself, matching each certificate's issuer name and authority key
//! identifier against the subject names and subject key identifiers of the certificates presented and
//! trusted, and checking each signature. That is how it tells a missing intermediate from a wrong root
//! from a wrong intermediate, which rustls-webpki reports alike as `UnknownIssuer`. webpki then runs as
//! a backstop: a chain it refuses gets its cause named from the certificates where they show it
//! (`critical-extension-unknown`, `name-constraint-violated`), else `verification-failed`. Where
//! OpenSSL-based clients, Go or Java would judge the chain otherwise than webpki, `verifiers-disagree`
//! says which fail and what each prints (see `verifiers`).
//!
//! Trust is judged strictly, the way a client that trusts only the root does: the anchors are the
//! self-issued certificates of the CA file (all of its certificates when it holds no root). An
//! intermediate that only the CA file supplies counts as missing from what is presented, because a
//! client given `root.pem` alone would fail.

mod cert;
mod leaf;
mod links;
mod trust;
mod verifiers;
mod walk;

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::input::{KeyMaterial, read_certs, read_key};
use super::{Finding, Input, codes};
use crate::pki::Purpose;
use cert::{Cert, Origin};

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

/// The certificates presented and trusted, and the path the doctor built through them.
struct Chain {
    /// The presented certificates (duplicates dropped), then those of the CA file.
    all: Vec<Cert>,
    /// How many of `all` were presented.
    presented_count: usize,
    /// The indices of the CA file's certificates in `all`.
    trusted: Vec<usize>,
    /// The trust anchors: the CA file's self-issued certificates (all of them when it holds none).
    anchors: Vec<usize>,
    /// A non-empty CA file was given.
    have_trust: bool,
    /// The index of the leaf.
    leaf: usize,
    /// From the leaf up, indices into `all`.
    path: Vec<usize>,
    /// Intermediates on the path that only the CA file supplied.
    borrowed: Vec<usize>,
    /// How the walk ended.
    end: End,
}

impl Chain {
    fn leaf_cert(&self) -> &Cert {
        &self.all[self.leaf]
    }

    /// The leaf is its own issuer.
    fn leaf_self_signed(&self) -> bool {
        matches!(self.end, End::SelfSigned(i) if i == self.leaf)
    }
}

/// Judges a chain, phase by phase: the certificates and the path through them (with their order), how
/// the path ends (trust), each link of it, then the leaf (purpose, host, key) and webpki's verdict.
fn judge(
    ctx: &Ctx<'_>,
    presented_der: &[Vec<u8>],
    trusted_der: Option<&[Vec<u8>]>,
    key: Option<(&str, &KeyMaterial)>,
    out: &mut Vec<Finding>,
) {
    let Some(pool) = walk::parse(ctx, presented_der, trusted_der, out) else {
        return;
    };
    let leaf = walk::pick_leaf(ctx, &pool, out);
    let chain = walk::walk_up(pool, leaf);
    walk::check_order(ctx, &chain, out);
    walk::check_unrelated(ctx, &chain, out);

    trust::check_end(ctx, &chain, out);
    trust::check_borrowed(ctx, &chain, out);
    trust::check_trust_given(ctx, &chain, out);

    for pos in 0..chain.path.len() {
        links::check_link(ctx, &chain, pos, out);
    }

    leaf::check_purpose(ctx, &chain, out);
    if let Some(host) = ctx.host {
        leaf::check_host(ctx, chain.leaf_cert(), host, out);
    }
    if let Some((key_name, material)) = key {
        leaf::check_key(
            ctx.presenter.name(),
            key_name,
            material,
            &chain.all[..chain.presented_count],
            chain.leaf_cert(),
            out,
        );
    }
    leaf::backstop(ctx, &chain, out);
    verifiers::check(ctx, &chain, out);
}
