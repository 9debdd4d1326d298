//! The first phases: parse the certificates, find the leaf, walk up from it to a trust anchor, a
//! self-signed certificate or a missing issuer, and judge what the walk showed about the order of what
//! is presented.

use super::cert::{Cert, Origin, Sig, names_issuer, signature};
use super::{Chain, Ctx, End};
use crate::doctor::{Finding, codes};

/// The certificates before the walk: presented (duplicates dropped), then trusted.
pub(super) struct Pool {
    all: Vec<Cert>,
    presented_count: usize,
    trusted: Vec<usize>,
    anchors: Vec<usize>,
    have_trust: bool,
}

/// Parses the presented certificates, dropping exact duplicates (a finding each), then those of the
/// CA file, and picks the trust anchors; `None` when nothing presented parses.
pub(super) fn parse(
    ctx: &Ctx<'_>,
    presented_der: &[Vec<u8>],
    trusted_der: Option<&[Vec<u8>]>,
    out: &mut Vec<Finding>,
) -> Option<Pool> {
    let pname = ctx.presenter.name().to_owned();
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
        return None;
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
    Some(Pool {
        all,
        presented_count,
        trusted,
        anchors,
        have_trust,
    })
}

/// The leaf: the first presented certificate, unless it issued another presented one (then the chain
/// is out of order, a finding).
pub(super) fn pick_leaf(ctx: &Ctx<'_>, pool: &Pool, out: &mut Vec<Finding>) -> usize {
    let pname = ctx.presenter.name().to_owned();
    let (all, presented_count) = (&pool.all, pool.presented_count);
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
    leaf
}

/// Walks up from the leaf: at each step the issuer named by the certificate, preferring a presented one
/// whose signature verifies, then a trusted one.
pub(super) fn walk_up(pool: Pool, leaf: usize) -> Chain {
    let Pool {
        all,
        presented_count,
        trusted,
        anchors,
        have_trust,
    } = pool;
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
    Chain {
        all,
        presented_count,
        trusted,
        anchors,
        have_trust,
        leaf,
        path,
        borrowed,
        end,
    }
}

/// Intermediates out of order (the leaf itself was handled by [`pick_leaf`]).
pub(super) fn check_order(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let (all, path, leaf, presented_count) =
        (&chain.all, &chain.path, chain.leaf, chain.presented_count);
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
}

/// Presented certificates that are not on the path.
pub(super) fn check_unrelated(ctx: &Ctx<'_>, chain: &Chain, out: &mut Vec<Finding>) {
    let pname = ctx.presenter.name().to_owned();
    let (all, path, leaf, presented_count) =
        (&chain.all, &chain.path, chain.leaf, chain.presented_count);
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
}
