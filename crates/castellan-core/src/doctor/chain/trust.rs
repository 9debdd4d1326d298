//! How the walk ended, judged as trust: a self-signed leaf, a root the CA file lacks, an issuer
//! nowhere to be found; intermediates only the CA file supplied; no CA file at all.

use super::cert::{same_ca, same_name_other_key};
use super::{Chain, Ctx, End, Presenter};
use crate::doctor::{Finding, Severity, codes};

/// How the walk ended.
pub(super) fn check_end(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    match chain.end {
        End::Anchor => {}
        End::SelfSigned(i) if i == chain.leaf => self_signed_leaf(ctx, chain, out),
        End::SelfSigned(i) => self_signed_root(ctx, chain, i, out),
        End::Missing => missing_issuer(ctx, chain, out),
    }
}

/// The leaf is self-signed: pinned by the CA file, or trusted by nobody.
fn self_signed_leaf(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let ca_name = ctx.ca_name.unwrap_or("the CA file");
    let (all, trusted, leaf_c) = (&chain.all, &chain.trusted, chain.leaf_cert());
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

/// The chain ends in a self-signed root (index `i`): presented (harmless), or one the CA file lacks.
fn self_signed_root(ctx: &Ctx<'_>, chain: &Chain, i: usize, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let ca_name = ctx.ca_name.unwrap_or("the CA file");
    let (all, presented_count, trusted, anchors, have_trust) = (
        &chain.all,
        chain.presented_count,
        &chain.trusted,
        &chain.anchors,
        chain.have_trust,
    );
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
            format!("optional: drop the root from {pname} (chain.pem is leaf + intermediates)"),
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

/// The issuer of the last certificate on the path is nowhere: a CA of that name with another key, a
/// missing intermediate, or a root the CA file lacks.
fn missing_issuer(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let ca_name = ctx.ca_name.unwrap_or("the CA file");
    let (all, path, leaf, anchors, have_trust) = (
        &chain.all,
        &chain.path,
        chain.leaf,
        &chain.anchors,
        chain.have_trust,
    );
    let leaf_c = chain.leaf_cert();
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

/// Intermediates only the CA file supplied: missing from what is presented.
pub(super) fn check_borrowed(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let ca_name = ctx.ca_name.unwrap_or("the CA file");
    let (all, path, leaf, borrowed) = (&chain.all, &chain.path, chain.leaf, &chain.borrowed);
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
}

/// No CA file: trust was not judged (a self-signed leaf already says so).
pub(super) fn check_trust_given(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    if !chain.have_trust && !chain.leaf_self_signed() {
        out.push(Finding::info(
            codes::TRUST_NOT_CHECKED,
            &pname,
            "no CA file was given, so whether clients trust this chain was not checked",
            "pass --ca with the file your clients trust (root.pem or ca-bundle.pem)",
        ));
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
