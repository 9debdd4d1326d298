//! The configured issuers and the mapping of a verified assertion to a Castellan client (no state,
//! no token signing: those are the caller's, in the parent module).

use std::collections::HashMap;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use zeroize::Zeroizing;

use super::keys;
use crate::config::TrustedIssuerConfig;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Leeway on `exp` and `nbf`, seconds.
pub const LEEWAY_SECS: i64 = 10;
/// The longest assertion read.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// A client assertion as sent. `Debug` hides the token.
pub struct ClientAssertion {
    /// `client_id`, when the client sent one: it must then be the id the mapping gives.
    pub client_id: Option<String>,
    /// The JWT.
    pub assertion: Zeroizing<String>,
}

impl std::fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why an assertion was refused (logged; the caller sees `invalid_client`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionError {
    /// Not a JWT, or an `alg` jsonwebtoken does not know (`none`).
    #[error("the assertion is not a JWT with a known alg")]
    Malformed,
    /// `iss` is no trusted issuer.
    #[error("the issuer is not trusted")]
    UnknownIssuer,
    /// `alg` is not in the issuer's allowlist.
    #[error("alg {0:?} is not accepted for this issuer")]
    Algorithm(Algorithm),
    /// No key of the issuer has this kid (after fetching them again when allowed).
    #[error("no key of the issuer verifies it (kid {0:?})")]
    UnknownKey(Option<String>),
    /// Signature, `iss`, `aud` or a required claim failed.
    #[error("the token failed verification: {0}")]
    Rejected(String),
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `sub` disagrees with the `kubernetes.io` claims.
    #[error("sub does not match the kubernetes.io claims")]
    Inconsistent,
    /// No entry maps this subject and audience.
    #[error("no trusted_issuer entry maps this subject")]
    NoMapping,
    /// The `client_id` sent is not the one the mapping gives.
    #[error("client_id does not match the mapped client")]
    ClientIdMismatch,
    /// The issuer's keys have never been fetched (the issuer cannot be reached).
    #[error("the issuer's keys cannot be fetched")]
    KeysUnavailable,
}

/// The client a verified assertion maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertedClient {
    /// The client id of Castellan's token.
    pub client_id: String,
    /// Its scopes, space-separated.
    pub scopes: String,
    /// The `aud` of Castellan's token, when the entry gives one.
    pub audience: Option<String>,
    /// Token lifetime, seconds (0: the default).
    pub token_ttl_secs: i64,
}

struct Entry {
    /// `client_id` with its placeholders as `*`: the ids this entry can give.
    client_glob: String,
    audience: String,
    subject: String,
    pod: Option<String>,
    client_id: String,
    scopes: String,
    token_audience: Option<String>,
    token_ttl_secs: i64,
}

struct Issuer {
    algorithms: Vec<Algorithm>,
    validation: HashMap<Algorithm, Validation>,
    entries: Vec<Entry>,
    keys: keys::IssuerKeys,
}

/// Every `[[trusted_issuer]]`, by issuer.
pub struct TrustedIssuers {
    by_issuer: HashMap<String, Issuer>,
}

impl std::fmt::Debug for TrustedIssuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuers")
            .field("issuers", &self.by_issuer.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct Unverified {
    iss: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, a: &str) -> bool {
        match self {
            Audience::One(s) => s == a,
            Audience::Many(v) => v.iter().any(|s| s == a),
        }
    }
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// The `kubernetes.io` claim of a projected service-account token.
#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: Named,
    #[serde(default)]
    pod: Option<Named>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(rename = "kubernetes.io", default)]
    kubernetes: Option<KubernetesClaims>,
}

/// `*` matches any run of characters (none included); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl TrustedIssuers {
    /// Builds the issuers from validated configuration (no fetch yet).
    pub fn new(entries: &[TrustedIssuerConfig]) -> Result<Self, crate::error::ServiceError> {
        let mut by_issuer: HashMap<String, Issuer> = HashMap::new();
        for e in entries {
            let bad = |m: String| {
                crate::error::ServiceError::Invalid(format!("trusted_issuer `{}`: {m}", e.issuer))
            };
            if !by_issuer.contains_key(&e.issuer) {
                let mut algorithms = Vec::new();
                let mut validation = HashMap::new();
                for a in e.algorithms() {
                    let alg = Algorithm::from_str(&a).map_err(|_| bad(format!("algorithm {a}")))?;
                    algorithms.push(alg);
                }
                let audiences: Vec<&str> = entries
                    .iter()
                    .filter(|o| o.issuer == e.issuer)
                    .map(|o| o.audience.as_str())
                    .collect();
                for alg in &algorithms {
                    let mut v = Validation::new(*alg);
                    v.set_issuer(&[&e.issuer]);
                    v.set_audience(&audiences);
                    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                    // exp and nbf are checked on the server's clock below.
                    v.validate_exp = false;
                    v.validate_nbf = false;
                    v.leeway = 0;
                    validation.insert(*alg, v);
                }
                let keys = keys::IssuerKeys::new(e).map_err(bad)?;
                by_issuer.insert(
                    e.issuer.clone(),
                    Issuer {
                        algorithms,
                        validation,
                        entries: Vec::new(),
                        keys,
                    },
                );
            }
            let issuer = by_issuer
                .get_mut(&e.issuer)
                .ok_or_else(|| bad("missing".into()))?;
            issuer.entries.push(Entry {
                client_glob: ["{namespace}", "{serviceaccount}", "{pod}"]
                    .iter()
                    .fold(e.client_id.clone(), |id, p| id.replace(p, "*")),
                audience: e.audience.clone(),
                subject: e.subject.clone(),
                pod: e.pod.clone(),
                client_id: e.client_id.clone(),
                scopes: e.scopes.join(" "),
                token_audience: e.token_audience.clone(),
                token_ttl_secs: e
                    .token_ttl
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            });
        }
        Ok(Self { by_issuer })
    }

    /// The scopes the entries that can give `client_id` hold (space-separated, each once), or `None`
    /// when no entry can (store clients' ids start with `cl_`, which no entry gives).
    pub fn scopes_of(&self, client_id: &str) -> Option<String> {
        if client_id.starts_with("cl_") {
            return None;
        }
        let mut scopes: Vec<&str> = Vec::new();
        let mut any = false;
        for e in self.by_issuer.values().flat_map(|i| i.entries.iter()) {
            if glob_match(&e.client_glob, client_id) {
                any = true;
                for s in e.scopes.split(' ') {
                    if !scopes.contains(&s) {
                        scopes.push(s);
                    }
                }
            }
        }
        any.then(|| scopes.join(" "))
    }

    /// Fetches every issuer's keys once (at start-up; a failure is logged and retried on use).
    pub async fn warm_up(&self) {
        for i in self.by_issuer.values() {
            i.keys.refresh().await;
        }
    }

    /// Verifies an assertion at `now` (unix seconds) and maps it to a client.
    pub async fn verify(&self, token: &str, now: i64) -> Result<AssertedClient, AssertionError> {
        if token.len() > MAX_ASSERTION_BYTES {
            return Err(AssertionError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AssertionError::Malformed)?;
        // The issuer picks the keys; nothing of the payload is trusted before the signature is.
        let unverified: Unverified = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| AssertionError::Malformed)?;
        let issuer = self
            .by_issuer
            .get(&unverified.iss)
            .ok_or(AssertionError::UnknownIssuer)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(AssertionError::Algorithm(header.alg));
        }
        let validation = issuer
            .validation
            .get(&header.alg)
            .ok_or(AssertionError::Algorithm(header.alg))?;
        let Some(key) = issuer.keys.key(header.kid.as_deref(), header.alg).await else {
            return Err(if issuer.keys.any() {
                AssertionError::UnknownKey(header.kid)
            } else {
                AssertionError::KeysUnavailable
            });
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, validation)
            .map_err(|e| AssertionError::Rejected(e.to_string()))?
            .claims;
        if claims.exp + LEEWAY_SECS <= now {
            return Err(AssertionError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(AssertionError::NotYetValid);
        }
        if let Some(k) = &claims.kubernetes
            && claims.sub
                != format!(
                    "system:serviceaccount:{}:{}",
                    k.namespace, k.serviceaccount.name
                )
        {
            return Err(AssertionError::Inconsistent);
        }
        let pod = claims
            .kubernetes
            .as_ref()
            .and_then(|k| k.pod.as_ref())
            .map(|p| p.name.as_str());
        let entry = issuer
            .entries
            .iter()
            .find(|e| {
                claims.aud.contains(&e.audience)
                    && glob_match(&e.subject, &claims.sub)
                    && e.pod
                        .as_deref()
                        .is_none_or(|p| pod.is_some_and(|name| glob_match(p, name)))
            })
            .ok_or(AssertionError::NoMapping)?;
        let client_id = render(&entry.client_id, claims.kubernetes.as_ref(), pod)
            .ok_or(AssertionError::NoMapping)?;
        Ok(AssertedClient {
            client_id,
            scopes: entry.scopes.clone(),
            audience: entry.token_audience.clone(),
            token_ttl_secs: entry.token_ttl_secs,
        })
    }
}

/// The client id of an entry, its placeholders filled; `None` when one has no value in this token.
fn render(template: &str, k: Option<&KubernetesClaims>, pod: Option<&str>) -> Option<String> {
    let mut out = template.to_owned();
    for (name, value) in [
        ("{namespace}", k.map(|k| k.namespace.as_str())),
        (
            "{serviceaccount}",
            k.map(|k| k.serviceaccount.name.as_str()),
        ),
        ("{pod}", pod),
    ] {
        if out.contains(name) {
            out = out.replace(name, value?);
        }
    }
    Some(out)
}
