//! Each certificate on the path, and the link to its issuer: validity, key, signature algorithm,
//! whether the issuer may issue it, path length, signature, EKU restrictions.

use super::cert::{Cert, KeyKind, P256, P384, P521, Sig, signature, weak_sig_alg};
use super::{Chain, Ctx, End};
use crate::doctor::{DAY, Finding, codes, span, when};

/// Judges the certificate at `pos` on the path, and its link to the one above it.
pub(super) fn check_link(ctx: &Ctx<'_>, chain: &Chain, pos: usize, out: &mut Vec<Finding>) {
    let i = chain.path[pos];
    let c = &chain.all[i];
    let subj = ctx.subject_of(c);
    let role = if pos == 0 {
        "the certificate".to_owned()
    } else if c.self_issued() {
        "the root".to_owned()
    } else {
        "the intermediate CA".to_owned()
    };
    check_validity(ctx, c, pos, &subj, &role, out);
    check_key_kind(c, &subj, &role, out);
    let self_signed_here = matches!(chain.end, End::SelfSigned(s) if s == i);
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
    if let Some(&up) = chain.path.get(pos + 1) {
        check_issuer(ctx, chain, pos, up, out);
    }
}

/// Expired, not yet valid, or expiring soon.
fn check_validity(
    ctx: &Ctx<'_>,
    c: &Cert,
    pos: usize,
    subj: &str,
    role: &str,
    out: &mut Vec<Finding>,
) {
    if ctx.now > c.not_after {
        out.push(Finding::error(
            codes::EXPIRED,
            subj,
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
            subj,
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
    } else if c.not_after - ctx.now < (7 * DAY).min(c.not_after.saturating_sub(c.not_before) / 3) {
        // Within a week of its end, or in the last third of a shorter life (where an agent renews
        // it): a certificate of a day is not "expiring" for its whole life.
        out.push(Finding::warning(
            codes::EXPIRING_SOON,
            subj,
            format!(
                "{role} {} expires in {} ({})",
                c.short(),
                span(c.not_after - ctx.now),
                when(c.not_after)
            ),
            "renew it now (castellan agent renews automatically)",
        ));
    }
}

/// Keys TLS clients refuse: small RSA, unknown curves, other kinds.
fn check_key_kind(c: &Cert, subj: &str, role: &str, out: &mut Vec<Finding>) {
    match &c.key {
        KeyKind::Rsa(b) if *b < 2048 => out.push(Finding::error(
            codes::WEAK_KEY,
            subj,
            format!(
                "{role} {} has a {b}-bit RSA key: rustls, Go, browsers and OpenSSL at its \
                 default security level refuse keys under 2048 bits (OpenSSL: `ee key too \
                 small` / `ca key too small`)",
                c.short()
            ),
            "issue a new certificate with a P-256 key (the default) or RSA of 2048 bits or \
             more",
        )),
        KeyKind::Ec(Some(curve)) if curve != P256 && curve != P384 && curve != P521 => {
            out.push(Finding::error(
                codes::WEAK_KEY,
                subj,
                format!(
                    "{role} {} has an elliptic-curve key on curve {curve}, which TLS clients \
                     do not support (only P-256, P-384 and P-521)",
                    c.short()
                ),
                "issue a new certificate with a P-256 key",
            ))
        }
        KeyKind::Other(kind) => out.push(Finding::error(
            codes::WEAK_KEY,
            subj,
            format!(
                "{role} {} has a {kind} key, which TLS clients do not accept",
                c.short()
            ),
            "issue a new certificate with a P-256, Ed25519 or RSA (≥ 2048-bit) key",
        )),
        _ => {}
    }
}

/// The issuer (`up`, index into `all`) of the certificate at `pos`: a CA allowed to sign it, within its
/// path length, whose key verifies the signature, and whose EKU allows the purpose.
fn check_issuer(ctx: &Ctx<'_>, chain: &Chain, pos: usize, up: usize, out: &mut Vec<Finding>) {
    let (all, path) = (&chain.all, &chain.path);
    let c = &all[path[pos]];
    let subj = ctx.subject_of(c);
    let leaf_c = chain.leaf_cert();
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
