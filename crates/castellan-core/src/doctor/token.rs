//! Judging JWKS documents (several replicas' key sets, side by side) and access tokens.
//!
//! Tokens are decoded and verified by jsonwebtoken. Claims are judged here, one by one, so that each
//! problem gets its own code (jsonwebtoken would stop at the first). When jsonwebtoken refuses a
//! token's header, the header is decoded once more (base64url, JSON) only to name the reason, such as
//! `alg: none`, which jsonwebtoken does not represent.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header, Validation};
use serde_json::Value;

use super::{Finding, codes, span, when};

/// A JWKS as fetched from one replica (or read from a file).
#[derive(Debug, Clone)]
pub struct JwksDoc {
    /// The URL or file it came from.
    pub source: String,
    /// Its bytes, or why they could not be fetched.
    pub body: Result<Vec<u8>, String>,
}

/// What to check a token against.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenExpectations<'a> {
    /// The expected `iss`.
    pub issuer: Option<&'a str>,
    /// An audience the token's `aud` must include.
    pub audience: Option<&'a str>,
    /// Clock skew tolerated for `exp`, `nbf` and `iat`, seconds.
    pub leeway: u64,
}

/// Reads a JWKS, or a finding saying why it is not one.
pub(super) fn parse_jwks(doc: &JwksDoc, out: &mut Vec<Finding>) -> Option<JwkSet> {
    let src = doc.source.as_str();
    let bytes = match &doc.body {
        Ok(b) => b,
        Err(why) => {
            out.push(Finding::error(
                codes::JWKS_UNREACHABLE,
                src,
                format!("cannot fetch the JWKS from {src}: {why}"),
                "check the URL (a Castellan server publishes /.well-known/jwks.json), that the \
                 server is running, and the network in between",
            ));
            return None;
        }
    };
    match serde_json::from_slice::<JwkSet>(bytes) {
        Ok(set) => Some(set),
        Err(e) => {
            let start: String = String::from_utf8_lossy(bytes).chars().take(60).collect();
            out.push(Finding::error(
                codes::JWKS_INVALID,
                src,
                format!(
                    "{src} is not a JSON Web Key Set ({e}); it starts with `{}`",
                    start.replace('\n', " ")
                ),
                "point at the JWKS document itself (`{\"keys\": [...]}`), e.g. \
                 https://HOST/.well-known/jwks.json",
            ));
            None
        }
    }
}

pub(super) fn kid_of(jwk: &Jwk) -> String {
    jwk.common
        .key_id
        .clone()
        .unwrap_or_else(|| "(no kid)".to_owned())
}

pub(super) fn list(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "no keys".to_owned()
    } else {
        items
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Compares the key sets several replicas publish and, with a token, says which of them can verify it.
pub fn check_jwks(docs: &[JwksDoc], token: Option<&str>, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut sets: Vec<(&str, BTreeMap<String, Value>, JwkSet)> = Vec::new();
    for doc in docs {
        if let Some(set) = parse_jwks(doc, &mut out) {
            let map = set
                .keys
                .iter()
                .map(|k| (kid_of(k), serde_json::to_value(k).unwrap_or(Value::Null)))
                .collect();
            sets.push((doc.source.as_str(), map, set));
        }
    }

    if sets.len() > 1 {
        // Group replicas by identical key sets.
        let mut groups: Vec<(BTreeMap<String, Value>, Vec<&str>)> = Vec::new();
        for (src, map, _) in &sets {
            match groups.iter_mut().find(|(m, _)| m == map) {
                Some((_, members)) => members.push(src),
                None => groups.push((map.clone(), vec![src])),
            }
        }
        if groups.len() > 1 {
            let all_kids: BTreeSet<String> =
                groups.iter().flat_map(|(m, _)| m.keys().cloned()).collect();
            let mut parts = Vec::new();
            for (map, members) in &groups {
                let kids: BTreeSet<String> = map.keys().cloned().collect();
                let missing: BTreeSet<String> = all_kids.difference(&kids).cloned().collect();
                let changed: BTreeSet<String> = kids
                    .iter()
                    .filter(|k| {
                        groups
                            .iter()
                            .any(|(m, _)| m.get(*k).is_some_and(|v| Some(v) != map.get(*k)))
                    })
                    .cloned()
                    .collect();
                let mut part = format!("{} publish(es) {}", members.join(" and "), list(&kids));
                if !missing.is_empty() {
                    part.push_str(&format!(" but not {}", list(&missing)));
                }
                if !changed.is_empty() {
                    part.push_str(&format!(
                        " (with other key material for {})",
                        list(&changed)
                    ));
                }
                parts.push(part);
            }
            let subjects: Vec<&str> = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
            out.push(Finding::error(
                codes::JWKS_DIVERGENCE,
                subjects.join(", "),
                format!(
                    "the replicas publish {} different key sets: {}. A token signed on one \
                     replica fails on services that fetched another's JWKS (`signature \
                     verification failed` / unknown kid)",
                    groups.len(),
                    parts.join("; ")
                ),
                "every replica must use the same store (the same --database-url, or the same data \
                 dir) and the same master key; a replica with a store of its own has a key ring \
                 of its own. Point it at the shared store and restart it",
            ));
        } else {
            let kids: BTreeSet<String> = sets[0].1.keys().cloned().collect();
            out.push(Finding::info(
                codes::JWKS_CONSISTENT,
                sets.iter().map(|s| s.0).collect::<Vec<_>>().join(", "),
                format!(
                    "all {} replicas publish the same key set: {}",
                    sets.len(),
                    list(&kids)
                ),
                "nothing to do",
            ));
        }
    }

    if let Some(token) = token {
        let token = clean(token);
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(e) => {
                out.push(header_finding(token, &e));
                return out;
            }
        };
        let kid = header.kid.clone();
        let mut verifies = Vec::new();
        let mut lacking = Vec::new();
        for (src, _, set) in &sets {
            match pick_key(set, kid.as_deref()) {
                Some(jwk) => {
                    let mut sub = Vec::new();
                    verify_with(token, &header, jwk, src, &mut sub);
                    if sub.iter().any(|f| f.severity == super::Severity::Error) {
                        out.extend(sub);
                    } else {
                        verifies.push(*src);
                    }
                }
                None => lacking.push(*src),
            }
        }
        let kid_text = kid.clone().unwrap_or_else(|| "(none)".to_owned());
        if verifies.is_empty() && !sets.is_empty() && !lacking.is_empty() {
            out.push(unknown_kid(&kid_text, &lacking));
        } else if !sets.is_empty() {
            let mut msg = format!(
                "the token (kid `{kid_text}`) verifies against {}",
                verifies.join(", ")
            );
            if !lacking.is_empty() {
                msg.push_str(&format!(
                    "; not against {}, which do(es) not publish that kid",
                    lacking.join(", ")
                ));
            }
            out.push(Finding::info(
                codes::TOKEN_VERIFIES,
                &kid_text,
                msg,
                "nothing to do",
            ));
        }
        check_claims(token, &TokenExpectations::default(), now, &mut out);
    }
    out
}

pub(super) fn unknown_kid(kid: &str, sources: &[&str]) -> Finding {
    Finding::error(
        codes::UNKNOWN_KID,
        kid,
        format!(
            "the token was signed by key `{kid}`, which no given JWKS publishes ({}): a replica \
             with a key of its own? (a process that made a signing key for itself, or one on \
             another store), or the key of a service Castellan replaces, not imported (its tokens \
             still in flight during a cutover); verifiers report an unknown kid or `signature \
             verification failed`",
            sources.join(", ")
        ),
        "find the process that issued the token (its /v1/sys/status shows the current kid) and \
         point it at the shared store; for an old service's key, import it keeping its kid: \
         `castellan keys import --pem OLD_KEY.pem --kid LEGACY_KID` (see docs/migrate-shared-key.md)",
    )
}

/// Strips a `Bearer ` prefix and whitespace.
pub(super) fn clean(token: &str) -> &str {
    let t = token.trim();
    t.strip_prefix("Bearer ")
        .or_else(|| t.strip_prefix("bearer "))
        .unwrap_or(t)
        .trim()
}

/// The key to verify with: by kid, or the only key when the token names none.
pub(super) fn pick_key<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// A finding for a header jsonwebtoken refused: `alg: none`, or a malformed token.
pub(super) fn header_finding(token: &str, e: &jsonwebtoken::errors::Error) -> Finding {
    let parts = token.split('.').count();
    if parts != 3 {
        return Finding::error(
            codes::TOKEN_MALFORMED,
            "token",
            format!(
                "the token is not a JWT: a JWT has three base64url parts separated by dots, this \
                 has {parts} (an opaque token, a truncated copy, or quotes around it?)"
            ),
            "copy the whole access_token value, without quotes or line breaks",
        );
    }
    // Diagnosis only: the header, decoded once more, to see what jsonwebtoken refused.
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(Value::as_str).map(str::to_owned));
    match alg {
        Some(a) if a.eq_ignore_ascii_case("none") => Finding::error(
            codes::ALG_NOT_ALLOWED,
            "token",
            "the token says `alg: none`: it is unsigned, and anyone can forge one; no verifier \
             may accept it",
            "reject it; find what produced it (a test fixture, or an attack)",
        ),
        Some(a) => Finding::error(
            codes::ALG_NOT_ALLOWED,
            "token",
            format!("the token's algorithm `{a}` is not one a verifier accepts ({e})"),
            "sign tokens with RS256, ES256 or EdDSA",
        ),
        None => Finding::error(
            codes::TOKEN_MALFORMED,
            "token",
            format!("the token's header cannot be read: {e}"),
            "copy the whole access_token value, without quotes or line breaks",
        ),
    }
}

/// Verifies the signature with one JWK; findings for what goes wrong.
pub(super) fn verify_with(
    token: &str,
    header: &Header,
    jwk: &Jwk,
    source: &str,
    out: &mut Vec<Finding>,
) {
    let kid = kid_of(jwk);
    let asymmetric = !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_));
    if header.alg.family() == AlgorithmFamily::Hmac && asymmetric {
        out.push(Finding::error(
            codes::ALG_NOT_ALLOWED,
            &kid,
            format!(
                "the token is signed with {:?} (an HMAC shared secret) but key `{kid}` from \
                 {source} is a public key: a verifier that accepted this would let anyone who \
                 knows the public key forge tokens (algorithm confusion)",
                header.alg
            ),
            "reject HMAC tokens; verifiers must pin the algorithm of the key (RS256, ES256, EdDSA)",
        ));
        return;
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        let Ok(expected) = key_alg.to_string().parse::<Algorithm>() else {
            out.push(Finding::error(
                codes::ALG_NOT_ALLOWED,
                &kid,
                format!(
                    "key `{kid}` from {source} is published for {key_alg:?}, which is not a \
                     signature algorithm: verifiers that check a key's alg refuse it \
                     (castellan-verify: `unknown alg`), others trust the token's own alg"
                ),
                "publish the key with the alg it signs with (RS256, ES256, EdDSA) or without alg",
            ));
            return;
        };
        if expected != header.alg {
            out.push(Finding::error(
                codes::ALG_NOT_ALLOWED,
                &kid,
                format!(
                    "the token says {:?} but key `{kid}` from {source} is for {:?}",
                    header.alg, key_alg
                ),
                "the header's alg must be the key's alg; reissue the token",
            ));
            return;
        }
    }
    let key = match DecodingKey::from_jwk(jwk) {
        Ok(k) => k,
        Err(e) => {
            out.push(Finding::error(
                codes::JWKS_INVALID,
                source,
                format!("key `{kid}` of {source} cannot be used: {e}"),
                "publish keys with kty, the key parameters, and alg",
            ));
            return;
        }
    };
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(_) => out.push(Finding::info(
            codes::SIGNATURE_VALID,
            &kid,
            format!("the signature verifies with key `{kid}` from {source}"),
            "nothing to do",
        )),
        Err(e) => match e.kind() {
            ErrorKind::InvalidSignature => out.push(Finding::error(
                codes::SIGNATURE_INVALID,
                &kid,
                format!(
                    "signature verification failed: the token names key `{kid}`, which {source} \
                     publishes, but the signature does not match it: the token was altered, or \
                     another key was given the same kid"
                ),
                "get a fresh token from the issuer; if it keeps failing, compare the issuer's \
                 signing key with the published one",
            )),
            ErrorKind::InvalidAlgorithm => out.push(Finding::error(
                codes::ALG_NOT_ALLOWED,
                &kid,
                format!(
                    "the token's algorithm {:?} does not fit key `{kid}` from {source}",
                    header.alg
                ),
                "the header's alg must be the key's alg; reissue the token",
            )),
            _ => out.push(Finding::error(
                codes::TOKEN_MALFORMED,
                "token",
                format!("the token cannot be decoded: {e}"),
                "copy the whole access_token value, without quotes or line breaks",
            )),
        },
    }
}

fn num(v: &Value, name: &str) -> Option<i64> {
    v.get(name)
        .and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
}

/// Judges `exp`, `nbf`, `iat`, `iss` and `aud`.
pub(super) fn check_claims(
    token: &str,
    expect: &TokenExpectations<'_>,
    now: i64,
    out: &mut Vec<Finding>,
) {
    let claims = match jsonwebtoken::dangerous::insecure_decode::<Value>(token) {
        Ok(d) => d.claims,
        Err(e) => {
            out.push(Finding::error(
                codes::TOKEN_MALFORMED,
                "token",
                format!("the token's claims cannot be read: {e}"),
                "copy the whole access_token value, without quotes or line breaks",
            ));
            return;
        }
    };
    if !claims.is_object() {
        out.push(Finding::error(
            codes::TOKEN_MALFORMED,
            "token",
            "the token's payload is not a JSON object of claims",
            "check what produced the token",
        ));
        return;
    }
    let leeway = i64::try_from(expect.leeway).unwrap_or(i64::MAX);
    match num(&claims, "exp") {
        Some(exp) if now > exp.saturating_add(leeway) => out.push(Finding::error(
            codes::TOKEN_EXPIRED,
            "token",
            format!(
                "the token expired {} ago (exp {}, leeway {leeway}s): verifiers answer 401 \
                 (PyJWT: `Signature has expired`, jsonwebtoken: `ExpiredSignature`)",
                span(now.saturating_sub(exp)),
                when(exp)
            ),
            "get a new token (clients should renew before exp); if it was just issued, check \
             the clocks of the issuer and the verifier",
        )),
        Some(_) => {}
        None => out.push(Finding::warning(
            codes::CLAIM_MISSING,
            "token",
            "the token has no `exp` claim: most verifiers (jsonwebtoken, PyJWT with defaults) \
             refuse it, and it never expires",
            "issue tokens with exp",
        )),
    }
    if let Some(nbf) = num(&claims, "nbf") {
        if nbf > now.saturating_add(leeway) {
            out.push(Finding::error(
                codes::TOKEN_NOT_YET_VALID,
                "token",
                format!(
                    "the token is not valid before {} ({} from now; leeway {leeway}s): the \
                     issuer's clock is ahead of this one (PyJWT: `The token is not yet valid \
                     (nbf)`)",
                    when(nbf),
                    span(nbf.saturating_sub(now))
                ),
                "synchronise the clocks (NTP) of issuer and verifiers, or allow a leeway of a \
                 minute",
            ));
        }
    } else if let Some(iat) = num(&claims, "iat")
        && iat > now.saturating_add(leeway)
    {
        out.push(Finding::error(
            codes::TOKEN_NOT_YET_VALID,
            "token",
            format!(
                "the token was issued {} in the future ({}; leeway {leeway}s): the \
                 issuer's clock is ahead (PyJWT: `The token is not yet valid (iat)`)",
                span(iat.saturating_sub(now)),
                when(iat)
            ),
            "synchronise the clocks (NTP) of issuer and verifiers",
        ));
    }
    if let Some(want) = expect.issuer {
        let got = claims.get("iss").and_then(Value::as_str);
        if got != Some(want) {
            let hint = match got {
                Some(g) if g.trim_end_matches('/') == want.trim_end_matches('/') => {
                    " (they differ only by a trailing slash, which still counts)"
                }
                Some(g) if g.eq_ignore_ascii_case(want) => " (they differ only in case)",
                _ => "",
            };
            out.push(Finding::error(
                codes::ISSUER_MISMATCH,
                "token",
                format!(
                    "the token's issuer is {} but `{want}` is expected{hint}: verifiers answer \
                     401 (PyJWT: `Invalid issuer`)",
                    got.map_or("missing".to_owned(), |g| format!("`{g}`"))
                ),
                "set the verifier's expected issuer to the issuer's public URL exactly (Castellan: \
                 --public-url), or get the token from the right issuer",
            ));
        }
    }
    if let Some(want) = expect.audience {
        let auds: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if !auds.iter().any(|a| a == want) {
            out.push(Finding::error(
                codes::AUDIENCE_MISMATCH,
                "token",
                format!(
                    "the token is for audience {} but `{want}` is expected: verifiers answer 401 \
                     (PyJWT: `Audience doesn't match` / `Invalid audience`)",
                    if auds.is_empty() {
                        "(none)".to_owned()
                    } else {
                        auds.iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                "create the client with the audience of the service it calls (castellan client \
                 create NAME --audience AUD …), or fix the verifier's expected audience",
            ));
        }
    }
}

/// Judges the token's signature against one JWKS document: its kid published, the algorithm fitting
/// the key, the signature verifying.
pub(super) fn check_signature(token: &str, header: &Header, doc: &JwksDoc, out: &mut Vec<Finding>) {
    if let Some(set) = parse_jwks(doc, out) {
        if header.alg.family() == AlgorithmFamily::Hmac
            && !set.keys.is_empty()
            && pick_key(&set, header.kid.as_deref()).is_none()
        {
            out.push(Finding::error(
                codes::ALG_NOT_ALLOWED,
                "token",
                format!(
                    "the token is signed with {:?} (an HMAC shared secret) while {} \
                     publishes public keys: accepting it would let anyone who knows a \
                     public key forge tokens (algorithm confusion)",
                    header.alg, doc.source
                ),
                "reject HMAC tokens; verifiers must pin the algorithm of the key",
            ));
        } else {
            match pick_key(&set, header.kid.as_deref()) {
                Some(jwk) => verify_with(token, header, jwk, &doc.source, out),
                None => {
                    let kid = header.kid.clone().unwrap_or_else(|| "(none)".to_owned());
                    let mut f = unknown_kid(&kid, &[doc.source.as_str()]);
                    let have: BTreeSet<String> = set.keys.iter().map(kid_of).collect();
                    f.message
                        .push_str(&format!("; it publishes {}", list(&have)));
                    out.push(f);
                }
            }
        }
    }
}

/// Judges a token: shape, algorithm, signature against `jwks` (when given), and claims.
pub fn check_token(
    token: &str,
    jwks: Option<&JwksDoc>,
    expect: &TokenExpectations<'_>,
    now: i64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let token = clean(token);
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => h,
        Err(e) => {
            out.push(header_finding(token, &e));
            return out;
        }
    };
    match jwks {
        Some(doc) => check_signature(token, &header, doc, &mut out),
        None => {
            if header.alg.family() == AlgorithmFamily::Hmac {
                out.push(Finding::warning(
                    codes::ALG_NOT_ALLOWED,
                    "token",
                    format!(
                        "the token is signed with {:?}, an HMAC shared secret: every verifier \
                         holds the secret and could forge tokens, and a verifier that also \
                         accepts public keys is open to algorithm confusion",
                        header.alg
                    ),
                    "use asymmetric tokens (RS256, ES256, EdDSA) verified against a JWKS",
                ));
            }
            out.push(Finding::info(
                codes::SIGNATURE_NOT_CHECKED,
                "token",
                format!(
                    "no JWKS given, so the signature (alg {:?}, kid `{}`) was not checked",
                    header.alg,
                    header.kid.as_deref().unwrap_or("(none)")
                ),
                "pass --jwks https://ISSUER/.well-known/jwks.json (or a file)",
            ));
        }
    }
    check_claims(token, expect, now, &mut out);
    out
}
