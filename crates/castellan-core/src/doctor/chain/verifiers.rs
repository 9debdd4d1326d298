//! Verdicts that hold for every common verifier, not only webpki: where OpenSSL-based clients (Python
//! `ssl`, Mosquitto, curl), Go's `crypto/x509` or Java would judge a chain or a trust file otherwise
//! than rustls-webpki does, the doctor says which fail and the message each prints. The rules are the
//! documented behaviour of each verifier, read off the parsed certificates:
//!
//! * OpenSSL builds the chain up to a **self-signed** certificate of the trust file; an intermediate
//!   alone in the CA file is no anchor for it (unless the application sets
//!   `X509_V_FLAG_PARTIAL_CHAIN`, which Python, Mosquitto and curl do not), while webpki, Go and Java
//!   take any certificate of the trust store as an anchor.
//! * OpenSSL takes a CA as a certificate's issuer only when the certificate's authority key
//!   identifier (if any) is the CA's subject key identifier; webpki, Go and Java go by name and
//!   signature.
//! * Go refuses a leaf without subject alternative names even when its common name is the host
//!   (since Go 1.15); OpenSSL's host check (`X509_check_host`, Python `ssl`, curl) and Java's
//!   `HostnameChecker` fall back to the common name then; webpki does not.
//!
//! And where webpki only says the chain does not verify, [`explain`] names the cause from the
//! certificates: a critical extension no verifier knows, a name outside a CA's name constraints.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::cert::{Cert, Sig, same_ca, signature, weak_sig_alg};
use super::{Chain, Ctx};
use crate::doctor::key_id;
use crate::doctor::{Finding, codes};

/// Findings where the common verifiers disagree with webpki about this chain.
pub(super) fn check(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    partial_chain(ctx, chain, out);
    key_id_mismatch(ctx, chain, out);
    sha1_signature(ctx, chain, out);
    if let Some(host) = ctx.host {
        common_name_only(ctx, chain.leaf_cert(), host, out);
    }
}

/// The path reaches a certificate of the CA file that is not self-signed, and the CA file holds no
/// self-signed root: an anchor for webpki, Go and Java, none for OpenSSL.
fn partial_chain(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    if chain.trusted.iter().any(|&i| chain.all[i].self_issued()) {
        return;
    }
    let Some(pos) = chain.path.iter().position(|&i| {
        !chain.all[i].self_issued()
            && chain
                .trusted
                .iter()
                .any(|&t| same_ca(&chain.all[t], &chain.all[i]))
    }) else {
        return;
    };
    let anchor = &chain.all[chain.path[pos]];
    let depth = pos;
    let ca = ctx.ca_name.unwrap_or("the CA file");
    out.push(Finding::warning(
        codes::VERIFIERS_DISAGREE,
        ca,
        format!(
            "{ca} holds {} but not the self-signed root above it ({}): webpki, Go crypto/x509 and \
             Java accept the chain with that intermediate as trust anchor, but OpenSSL-based \
             clients refuse it, since OpenSSL builds the chain up to a self-signed root and takes a \
             non-root anchor only with X509_V_FLAG_PARTIAL_CHAIN. openssl verify: `error 2 at \
             {depth} depth lookup: unable to get issuer certificate`; Python ssl (and paho): \
             `[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get issuer \
             certificate`; curl: `SSL certificate problem: unable to get issuer certificate`; \
             Mosquitto: `certificate verify failed` and the `unknown ca` alert at the peer",
            anchor.short(),
            anchor.describe_issuer()
        ),
        "give the peers a CA file that ends with the root (Castellan's root.pem, or ca-bundle.pem \
         with root and intermediate), not the intermediate alone",
    ));
}

/// A certificate whose issuer (by name and signature) has a subject key identifier other than the
/// certificate's authority key identifier: webpki, Go and Java accept the link, OpenSSL does not.
fn key_id_mismatch(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    for &i in &chain.path {
        let c = &chain.all[i];
        let Some(aki) = &c.aki else { continue };
        let issuer = chain.all.iter().find(|k| {
            k.subject_raw == c.issuer_raw
                && k.ski.as_ref().is_some_and(|s| s != aki)
                && signature(c, k) == Sig::Valid
        });
        let Some(issuer) = issuer else { continue };
        out.push(Finding::warning(
            codes::VERIFIERS_DISAGREE,
            ctx.subject_of(c),
            format!(
                "{} is signed by {}'s key, but its authority key identifier {} is not that CA's \
                 subject key identifier {}: webpki (rustls), Go crypto/x509 and Java link them by \
                 name and signature and accept the chain, while OpenSSL-based clients do not take \
                 that CA as its issuer. openssl verify: `unable to get local issuer certificate`; \
                 Python ssl: `[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable \
                 to get local issuer certificate`; curl: `SSL certificate problem: unable to get \
                 local issuer certificate`",
                c.short(),
                issuer.short(),
                key_id(aki),
                issuer.ski.as_deref().map(key_id).unwrap_or_default()
            ),
            "reissue the certificate from the CA as it is now (its authority key identifier is \
             then the CA's subject key identifier), or give the peers the CA certificate whose \
             subject key identifier it names",
        ));
        return;
    }
}

/// A certificate below the root signed with SHA-1: refused by webpki, Go and OpenSSL-based TLS
/// clients at their default security level, accepted by Java under a private CA and by a bare
/// `openssl verify`, so checking with either of those hides the failure.
fn sha1_signature(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let Some(c) = chain.path.iter().map(|&i| &chain.all[i]).find(|c| {
        !c.self_issued() && weak_sig_alg(&c.sig_alg).is_some_and(|a| a.contains("SHA-1"))
    }) else {
        return;
    };
    out.push(Finding::warning(
        codes::VERIFIERS_DISAGREE,
        ctx.subject_of(c),
        format!(
            "{} is signed with SHA-1: webpki (rustls), Go and OpenSSL-based TLS clients at their \
             default security level refuse it (Python ssl: `[SSL: CERTIFICATE_VERIFY_FAILED] \
             certificate verify failed: CA signature digest algorithm too weak`; Go: `x509: \
             cannot verify signature: insecure algorithm SHA1-RSA`), but Java accepts it under a \
             private CA and a bare `openssl verify` prints `OK`, so a check with either of those \
             does not show the failure",
            c.short()
        ),
        "re-issue it with a SHA-256 (or stronger) signature",
    ));
}

/// The host is only the leaf's common name: no subject alternative name at all.
fn common_name_only(ctx: &Ctx<'_>, leaf: &Cert, host: &str, out: &mut Vec<Finding>) {
    if !leaf.dns.is_empty() || !leaf.ips.is_empty() {
        return;
    }
    let Some(cn) = &leaf.common_name else {
        return;
    };
    if !cn.eq_ignore_ascii_case(host) {
        return;
    }
    out.push(Finding::warning(
        codes::VERIFIERS_DISAGREE,
        ctx.presenter.name(),
        format!(
            "{} names `{host}` only as its common name, with no subject alternative names: \
             OpenSSL-based clients (openssl verify -verify_hostname, Python ssl, curl, Mosquitto) \
             and Java fall back to the common name and accept it, but webpki (rustls) and Go \
             refuse it. Go: `x509: certificate relies on legacy Common Name field, use SANs \
             instead`; rustls: `invalid peer certificate: NotValidForName`",
            leaf.short()
        ),
        format!("reissue the certificate with `{host}` as a subject alternative name (DNS or IP)"),
    ));
}

/// Extensions webpki (and OpenSSL, Go, Java) understand when critical.
const KNOWN_CRITICAL: [&str; 8] = [
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName
    "2.5.29.19", // basicConstraints
    "2.5.29.30", // nameConstraints
    "2.5.29.37", // extKeyUsage
    "2.5.29.31", // cRLDistributionPoints
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.35", // authorityKeyIdentifier
];

/// The cause of a webpki refusal (`err`, its error variant) as the certificates show it, when they
/// do.
pub(super) fn explain(ctx: &Ctx<'_>, chain: &Chain, err: &str) -> Option<Finding> {
    if err.contains("UnsupportedCriticalExtension") {
        return critical_extension(ctx, chain);
    }
    if err.contains("NameConstraintViolation") {
        return name_constraints(ctx, chain);
    }
    None
}

fn critical_extension(ctx: &Ctx<'_>, chain: &Chain) -> Option<Finding> {
    for &i in &chain.path {
        let c = &chain.all[i];
        let (_, x) = X509Certificate::from_der(&c.der).ok()?;
        let unknown: Vec<String> = x
            .extensions()
            .iter()
            .filter(|e| e.critical)
            .map(|e| e.oid.to_id_string())
            .filter(|oid| !KNOWN_CRITICAL.contains(&oid.as_str()))
            .collect();
        if unknown.is_empty() {
            continue;
        }
        let oids = unknown.join(", ");
        return Some(Finding::error(
            codes::CRITICAL_EXTENSION_UNKNOWN,
            ctx.subject_of(c),
            format!(
                "{} carries the critical extension {oids}, which no common verifier knows, and a \
                 verifier must refuse a certificate with a critical extension it does not know: \
                 rustls-webpki: `UnsupportedCriticalExtension`; openssl verify: `unhandled \
                 critical extension`; Go: `x509: unhandled critical extension`; Java: `PKIX path \
                 validation failed: java.security.cert.CertPathValidatorException: unrecognized \
                 critical extension(s)`",
                c.short()
            ),
            "reissue the certificate without that extension, or with it marked non-critical",
        ));
    }
    None
}

/// A DNS name is within `base` (a name constraint: `example.com` or `.example.com`).
fn within(name: &str, base: &str) -> bool {
    let (name, base) = (name.to_ascii_lowercase(), base.to_ascii_lowercase());
    let base = base.trim_start_matches('.');
    name == base || name.ends_with(&format!(".{base}"))
}

fn dns_subtrees(trees: Option<&Vec<x509_parser::extensions::GeneralSubtree<'_>>>) -> Vec<String> {
    trees
        .map(|t| {
            t.iter()
                .filter_map(|s| match &s.base {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn name_constraints(ctx: &Ctx<'_>, chain: &Chain) -> Option<Finding> {
    let leaf = chain.leaf_cert();
    for &i in chain.path.iter().skip(1) {
        let c = &chain.all[i];
        let (_, x) = X509Certificate::from_der(&c.der).ok()?;
        let Some(nc) = x
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::NameConstraints(nc) => Some(nc.clone()),
                _ => None,
            })
        else {
            continue;
        };
        let permitted = dns_subtrees(nc.permitted_subtrees.as_ref());
        let excluded = dns_subtrees(nc.excluded_subtrees.as_ref());
        let bad = leaf.dns.iter().find_map(|d| {
            if let Some(e) = excluded.iter().find(|e| within(d, e)) {
                return Some((d.clone(), format!("is in the excluded subtree `{e}`")));
            }
            (!permitted.is_empty() && !permitted.iter().any(|p| within(d, p))).then(|| {
                (
                    d.clone(),
                    format!("is outside the permitted subtrees {}", permitted.join(", ")),
                )
            })
        });
        let Some((name, why)) = bad else { continue };
        return Some(Finding::error(
            codes::NAME_CONSTRAINT_VIOLATED,
            ctx.presenter.name(),
            format!(
                "{} names `{name}`, which {why} of {}'s name constraints: every common verifier \
                 refuses it. rustls-webpki: `NameConstraintViolation`; openssl verify: `permitted \
                 subtree violation` (or `excluded subtree violation`); Go: `x509: a root or \
                 intermediate certificate is not authorized to sign for this name`; Java: `PKIX \
                 path validation failed: java.security.cert.CertPathValidatorException: name \
                 constraints check failed`",
                leaf.short(),
                c.short()
            ),
            format!(
                "issue the certificate for a name {} allows, or have the CA reissued with \
                 constraints that cover `{name}`",
                c.short()
            ),
        ));
    }
    None
}
