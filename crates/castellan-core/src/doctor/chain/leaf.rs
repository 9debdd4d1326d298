//! The leaf itself: its purpose, the host name, the private key; then webpki as the backstop.

use std::net::IpAddr;

use rcgen::PublicKeyData;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::cert::Cert;
use super::{Chain, Ctx, End};
use crate::doctor::input::KeyMaterial;
use crate::doctor::{Finding, Severity, codes, when};
use crate::pki::Purpose;

/// The leaf's own purpose: its EKU, and whether it is a CA.
pub(super) fn check_purpose(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let leaf_c = chain.leaf_cert();
    let leaf_self_signed = chain.leaf_self_signed();
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
}

/// Webpki, strictly, when no error explains a failure already; or the summary.
pub(super) fn backstop(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let ca_name = ctx.ca_name.unwrap_or("the CA file");
    let (all, path, end, leaf_c) = (&chain.all, &chain.path, chain.end, chain.leaf_cert());
    let errors_so_far = out.iter().any(|f| f.severity == Severity::Error);
    // A CA checked as the "leaf" (a store's issuing CA) is no end entity for webpki: its path was
    // checked link by link above.
    if chain.have_trust && !errors_so_far && !chain.leaf_self_signed() {
        let verdict = if leaf_c.is_ca {
            Ok(())
        } else {
            webpki_verify(chain, ctx)
        };
        if let Err(e) = verdict {
            if let Some(cause) = super::verifiers::explain(ctx, chain, &e) {
                out.push(cause);
                return;
            }
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

pub(super) fn check_host(ctx: &Ctx<'_>, leaf: &Cert, host: &str, out: &mut Vec<Finding>) {
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

pub(super) fn check_key(
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

/// Webpki's verdict on the leaf, with the presented certificates as intermediates and the anchors as
/// trust, for the purpose asked for (or the one the leaf declares).
fn webpki_verify(chain: &Chain, ctx: &Ctx<'_>) -> Result<(), String> {
    let (all, leaf, presented_count, anchors) = (
        &chain.all,
        chain.leaf,
        chain.presented_count,
        &chain.anchors,
    );
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
