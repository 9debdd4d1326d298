//! One address in front of many replicas: the JWKS of one URL fetched several times over fresh
//! connections (the caller fetches; a load balancer sends each connection to some replica), grouped
//! by key set. Replicas on stores of their own show up as several key sets behind one address, and a
//! token verifies with only a share of the fetches: the way users meet that failure (about half the
//! requests failing) rather than replica by replica.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::token::{
    JwksDoc, TokenExpectations, check_claims, check_signature, check_token, clean, header_finding,
    kid_of, list, parse_jwks,
};
use super::{Finding, Severity, codes};

/// The fetches that gave one key set.
struct Group {
    /// kid → the key's JSON, to compare sets.
    keys: BTreeMap<String, Value>,
    /// One fetch of this set (the index into the samples).
    first: usize,
    /// How many fetches gave it.
    count: usize,
}

/// The fetches grouped by key set, and the findings of the fetches that gave none (unreachable, not a
/// JWKS).
fn group(docs: &[JwksDoc]) -> (Vec<Group>, Vec<Finding>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut failures = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let Some(set) = parse_jwks(doc, &mut failures) else {
            continue;
        };
        let keys: BTreeMap<String, Value> = set
            .keys
            .iter()
            .map(|k| (kid_of(k), serde_json::to_value(k).unwrap_or(Value::Null)))
            .collect();
        match groups.iter_mut().find(|g| g.keys == keys) {
            Some(g) => g.count += 1,
            None => groups.push(Group {
                keys,
                first: i,
                count: 1,
            }),
        }
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.first.cmp(&b.first)));
    (groups, failures)
}

fn kids(g: &Group) -> BTreeSet<String> {
    g.keys.keys().cloned().collect()
}

/// `share` of `n` in words: `5 of 10 fetches (50%)`.
fn share(part: usize, n: usize) -> String {
    let pct = (part * 100 + n / 2) / n.max(1);
    format!("{part} of {n} fetches ({pct}%)")
}

/// What the fetches that gave no key set say: nothing when none failed, the single failure itself
/// when every fetch failed, else a warning with the count.
fn failure_findings(url: &str, n: usize, failures: Vec<Finding>, any_set: bool) -> Vec<Finding> {
    let Some(first) = failures.first() else {
        return Vec::new();
    };
    if !any_set {
        let mut f = first.clone();
        f.message = format!("{} (all {n} fetches failed)", f.message);
        return vec![f];
    }
    vec![Finding::warning(
        first.code,
        url,
        format!(
            "{} failed or gave no key set, e.g. {}: a replica behind this address is down or \
             is not a Castellan server, and the requests it gets fail",
            share(failures.len(), n),
            first.message
        ),
        "check each replica behind the load balancer (its /readyz and /.well-known/jwks.json) \
         and take the broken one out of rotation",
    )]
}

/// Judges the key sets `docs` (fetches of the one address `url`) gave: one key set, or several
/// (replicas behind the address on different stores).
fn judge_sets(url: &str, n: usize, groups: &[Group]) -> Finding {
    if groups.len() == 1 {
        return Finding::info(
            codes::JWKS_CONSISTENT,
            url,
            format!(
                "all {n} fetches of {url} over fresh connections gave the same key set: {}",
                list(&kids(&groups[0]))
            ),
            "nothing to do",
        );
    }
    let parts: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            format!(
                "key set {} ({}) in {} fetch(es)",
                i + 1,
                list(&kids(g)),
                g.count
            )
        })
        .collect();
    Finding::error(
        codes::JWKS_DIVERGENCE,
        url,
        format!(
            "{url} gave {} distinct key sets in {n} fetches over fresh connections: {}. The \
             address is in front of replicas that publish different keys, so a token signed on \
             one fails on services whose cached JWKS came from another (`signature verification \
             failed` / unknown kid) in about the same share of requests",
            groups.len(),
            parts.join("; ")
        ),
        "every replica behind the address must use the same store (the same --database-url) and \
         the same master key; find the odd one with `castellan doctor jwks` on each replica's own \
         URL (its /v1/sys/status shows its replica id and key ring fingerprint), point it at the \
         shared store and restart it",
    )
}

/// Which share of the fetches can verify `token`: findings for the signature as one fetch saw it
/// when all agree, else a `token-verifies-partly` error naming the share.
fn token_share(url: &str, groups: &[Group], docs: &[JwksDoc], token: &str) -> Vec<Finding> {
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => h,
        Err(e) => return vec![header_finding(token, &e)],
    };
    let mut good: Option<Vec<Finding>> = None;
    let mut bad: Option<Vec<Finding>> = None;
    let mut verified = 0;
    for g in groups {
        let mut sub = Vec::new();
        check_signature(token, &header, &docs[g.first], &mut sub);
        if sub.iter().any(|f| f.severity == Severity::Error) {
            bad.get_or_insert(sub);
        } else {
            verified += g.count;
            good.get_or_insert(sub);
        }
    }
    let kid = header.kid.as_deref().unwrap_or("(none)");
    let judged: usize = groups.iter().map(|g| g.count).sum();
    match (good, bad) {
        (Some(mut ok), None) => {
            ok.push(Finding::info(
                codes::TOKEN_VERIFIES,
                kid,
                format!(
                    "the token (kid `{kid}`) verifies with the key set of every fetch of {url}: {}",
                    share(verified, judged)
                ),
                "nothing to do",
            ));
            ok
        }
        (None, Some(fail)) => fail,
        (Some(_), Some(fail)) => {
            let why = fail
                .iter()
                .find(|f| f.severity == Severity::Error)
                .map(|f| f.message.clone())
                .unwrap_or_default();
            vec![Finding::error(
                codes::TOKEN_VERIFIES_PARTLY,
                kid,
                format!(
                    "the token (kid `{kid}`) verifies in {} of {url} over fresh connections: the \
                     address is in front of replicas with {} different key sets, and a service \
                     that fetched the JWKS from another replica refuses it; the other fetches: {why}",
                    share(verified, judged),
                    groups.len()
                ),
                "every replica behind the address must use the same store (the same \
                 --database-url) and the same master key; point the odd replica at the shared \
                 store and restart it",
            )]
        }
        (None, None) => Vec::new(),
    }
}

/// `doctor jwks URL`: the key sets that `docs`, fetches of the one address `url`, gave; with a token,
/// the share of fetches that can verify it (and its claims, without expectations).
pub fn check_jwks_sampled(
    url: &str,
    docs: &[JwksDoc],
    token: Option<&str>,
    now: i64,
) -> Vec<Finding> {
    let n = docs.len();
    let (groups, failures) = group(docs);
    let mut out = failure_findings(url, n, failures, !groups.is_empty());
    if groups.is_empty() {
        return out;
    }
    out.push(judge_sets(url, n, &groups));
    if let Some(token) = token {
        let token = clean(token);
        let judged = token_share(url, &groups, docs, token);
        let malformed = judged.iter().any(|f| f.code == codes::TOKEN_MALFORMED);
        out.extend(judged);
        if !malformed {
            check_claims(token, &TokenExpectations::default(), now, &mut out);
        }
    }
    out
}

/// `doctor token --jwks URL`: the token judged against every fetch of `url` (one fetch: exactly
/// [`check_token`]); says which share of the fetches can verify it.
pub fn check_token_sampled(
    token: &str,
    url: &str,
    docs: &[JwksDoc],
    expect: &TokenExpectations<'_>,
    now: i64,
) -> Vec<Finding> {
    if docs.len() <= 1 {
        return check_token(token, docs.first(), expect, now);
    }
    let token = clean(token);
    if let Err(e) = jsonwebtoken::decode_header(token) {
        return vec![header_finding(token, &e)];
    }
    let n = docs.len();
    let (groups, failures) = group(docs);
    let mut out = failure_findings(url, n, failures, !groups.is_empty());
    if !groups.is_empty() {
        out.extend(token_share(url, &groups, docs, token));
    }
    check_claims(token, expect, now, &mut out);
    out
}
