//! Robustness of castellan-verify's parsing of untrusted input: tokens, JWKS documents,
//! `Cache-Control` values and `Authorization` headers. Arbitrary input and structure-aware mutations
//! of valid input (tokens signed by castellan-core, its JWKS) must never panic; inputs that are
//! certainly bad (an edited token, a JWKS whose key was changed, a truncated JWKS) must be refused.
//!
//! Where a mutation may leave the input valid (white space in a JWKS), only the absence of panics is
//! checked, and the test says so.
//!
//! Case counts are modest so that the suite stays fast in debug builds; set `PROPTEST_CASES` to run
//! every property with more cases.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use castellan_core::token::{AccessClaims, sign_access_token};
use castellan_core::token::{Alg, SigningKey};
use castellan_verify::{
    BoxFuture, Error, FetchError, Fetched, JwksFetcher, ManualClock, Verifier, VerifyLayer,
    parse_max_age,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{sign_parts, sign_raw};

const ISS: &str = "https://castellan.test";
const AUD: &str = "billing-api";
const NOW: i64 = 1_800_000_000;
/// The verifier's default leeway, seconds.
const LEEWAY: i64 = 60;

/// `cases`, unless `PROPTEST_CASES` asks for another count. Failures are not persisted to files.
fn cfg(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------------
// Fixture: keys and tokens from castellan-core, a verifier on a fixed clock with an in-memory JWKS.
// ---------------------------------------------------------------------------------------------------

/// Serves a fixed body as the JWKS.
struct StaticJwks(Mutex<Vec<u8>>);

impl JwksFetcher for StaticJwks {
    fn fetch<'a>(&'a self, _etag: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        let body = self.0.lock().expect("lock").clone();
        Box::pin(async move {
            Ok(Fetched::Keys {
                body,
                max_age: Some(Duration::from_secs(300)),
                etag: None,
            })
        })
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    keys: Vec<SigningKey>,
    tokens: Vec<String>,
    jwks: Vec<u8>,
    verifier: Verifier,
}

fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let keys: Vec<SigningKey> = [Alg::ES256, Alg::EdDSA, Alg::RS256]
            .into_iter()
            .map(|alg| SigningKey::generate(alg, None).expect("key").0)
            .collect();
        let tokens = keys
            .iter()
            .map(|k| sign_access_token(k, &claims()).expect("token"))
            .collect();
        let jwks = jwks_of(&keys.iter().map(jwk).collect::<Vec<_>>());
        let verifier = verifier(&rt, &jwks);
        let fixture = Fixture {
            rt,
            keys,
            tokens,
            jwks,
            verifier,
        };
        for t in &fixture.tokens {
            fixture
                .rt
                .block_on(fixture.verifier.verify(t))
                .expect("the fixture's tokens verify");
        }
        fixture
    })
}

fn verifier(rt: &tokio::runtime::Runtime, body: &[u8]) -> Verifier {
    let _guard = rt.enter();
    Verifier::builder(ISS, AUD, "https://castellan.test/.well-known/jwks.json")
        .clock(Arc::new(ManualClock::new(NOW)))
        .fetcher(Arc::new(StaticJwks(Mutex::new(body.to_vec()))))
        .background_refresh(false)
        .build()
        .expect("verifier")
}

fn claims() -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        sub: "cl_billing".into(),
        aud: AUD.into(),
        exp: NOW + 300,
        iat: NOW,
        nbf: NOW,
        jti: "jti-1".into(),
        client_id: "cl_billing".into(),
        scope: "invoices:read".into(),
    }
}

fn jwk(key: &SigningKey) -> Value {
    serde_json::to_value(key.jwk()).expect("jwk")
}

fn jwks_of(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).expect("jwks")
}

fn verify(token: &str) -> Result<castellan_verify::Claims, Error> {
    let f = fx();
    f.rt.block_on(f.verifier.verify(token))
}

fn key_index() -> impl Strategy<Value = usize> {
    0usize..3
}

// ---------------------------------------------------------------------------------------------------
// Generic byte mutations.
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, Index),
    Duplicate(Index, Index),
    Splice(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

fn range(len: usize, a: &Index, b: &Index) -> std::ops::Range<usize> {
    let (x, y) = (a.index(len + 1), b.index(len + 1));
    x.min(y)..x.max(y)
}

fn apply(m: &Mutation, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let len = v.len();
    match m {
        Mutation::Truncate(i) => v.truncate(i.index(len.max(1))),
        Mutation::Flip(i, x) if len > 0 => v[i.index(len)] ^= x,
        Mutation::Set(i, b) if len > 0 => v[i.index(len)] = *b,
        Mutation::Insert(i, bytes) => {
            let at = i.index(len + 1);
            v.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(a, b) => {
            v.drain(range(len, a, b));
        }
        Mutation::Duplicate(a, b) => {
            let r = range(len, a, b);
            let copy = v[r.clone()].to_vec();
            v.splice(r.end..r.end, copy);
        }
        Mutation::Splice(a, b, c) => {
            let r = range(len, a, b);
            let copy = v[r].to_vec();
            let at = c.index(len + 1);
            v.splice(at..at, copy);
        }
        Mutation::Flip(..) | Mutation::Set(..) => {}
    }
    v
}

fn apply_all(ms: &[Mutation], input: &[u8]) -> Vec<u8> {
    ms.iter().fold(input.to_vec(), |acc, m| apply(m, &acc))
}

// ---------------------------------------------------------------------------------------------------
// Tokens.
// ---------------------------------------------------------------------------------------------------

const TOKEN_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \"{}";

proptest! {
    #![proptest_config(cfg(256))]

    /// Arbitrary strings, JWT-shaped or not, are refused.
    #[test]
    fn arbitrary_tokens_are_refused(
        token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,80}",
            "eyJ[A-Za-z0-9_-]{0,60}\\.eyJ[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,90}",
            "[.]{0,5}",
        ],
    ) {
        prop_assert!(verify(&token).is_err());
    }

    /// Any single changed character of a valid token is refused.
    #[test]
    fn a_token_with_a_changed_character_is_refused(
        k in key_index(),
        at in any::<Index>(),
        c in prop::sample::select(TOKEN_CHARS),
    ) {
        let mut bytes = fx().tokens[k].clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != c);
        bytes[i] = c;
        let edited = String::from_utf8(bytes).expect("ascii");
        prop_assert!(verify(&edited).is_err(), "{:?}", edited);
    }

    /// Every proper prefix of a valid token, and any edit (inserted, deleted, repeated, moved
    /// bytes), is refused.
    #[test]
    fn an_edited_token_is_refused(k in key_index(), cut in any::<Index>(), ms in mutations()) {
        let token = &fx().tokens[k];
        prop_assert!(verify(&token[..cut.index(token.len())]).is_err());
        let edited = String::from_utf8_lossy(&apply_all(&ms, token.as_bytes())).into_owned();
        prop_assume!(&edited != token);
        prop_assert!(verify(&edited).is_err(), "{:?}", edited);
    }

    /// A changed byte of the signature (re-encoded as base64url) is refused as a bad signature.
    #[test]
    fn a_changed_signature_byte_is_a_bad_signature(k in key_index(), at in any::<Index>(), x in 1u8..=255) {
        let token = &fx().tokens[k];
        let (message, signature) = token.rsplit_once('.').expect("three parts");
        let mut sig = B64.decode(signature).expect("base64url");
        let i = at.index(sig.len());
        sig[i] ^= x;
        let edited = format!("{message}.{}", B64.encode(sig));
        prop_assert_eq!(verify(&edited), Err(Error::BadSignature));
    }
}

/// A header member: the right value, another valid one, or any JSON.
fn member(right: Value, others: Vec<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        4 => Just(Some(right)),
        2 => prop::sample::select(others).prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(u64::MAX)),
        any::<String>().prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        Just(json!([1, "a"])),
        Just(json!(["a", "b"])),
        Just(json!({"a": 1})),
    ]
    .boxed()
}

fn non_null(s: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    s.prop_filter("not null", |v| !v.is_null()).boxed()
}

fn time_value() -> BoxedStrategy<Value> {
    prop_oneof![
        (-1000i64..1000).prop_map(|d| Value::from(NOW + d)),
        Just(Value::from(NOW - LEEWAY)),
        Just(Value::from(NOW - LEEWAY + 1)),
        Just(Value::from(NOW + LEEWAY)),
        Just(Value::from(NOW + LEEWAY + 1)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(i64::MAX)),
        Just(json!(-1)),
        Just(json!(1.8e9)),
        json_value(),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Hostile {
    key: usize,
    alg: Option<Value>,
    kid: Option<Value>,
    typ: Option<Value>,
    crit: Option<Value>,
    jku: Option<Value>,
    iss: Option<Value>,
    sub: Option<Value>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
}

fn hostile() -> BoxedStrategy<Hostile> {
    key_index().prop_flat_map(|key| {
        let k = &fx().keys[key];
        let algs = ["ES256", "EdDSA", "RS256", "HS256", "none", "es256", "PS256"]
            .into_iter()
            .map(Value::from)
            .collect();
        let header = (
            member(Value::from(k.alg().as_str()), algs),
            member(
                Value::from(k.kid()),
                vec![Value::from(fx().keys[(key + 1) % 3].kid()), Value::from("")],
            ),
            member(
                Value::from("at+jwt"),
                ["JWT", "AT+JWT", "application/at+jwt", "application/jwt", "jwt+at", "application/", ""]
                    .into_iter()
                    .map(Value::from)
                    .collect(),
            ),
            // No `null` here: a null crit, nbf or iat is the finding of `null_crit_nbf_or_iat_is_refused`.
            prop_oneof![4 => Just(None), 1 => non_null(json_value()).prop_map(Some), 1 => Just(Some(json!(["exp"])))],
            prop::option::of(Just(Value::from("https://attacker.test/jwks.json"))),
        )
            .boxed();
        let payload = (
            member(Value::from(ISS), vec![Value::from(format!("{ISS}/")), Value::from("")]),
            member(Value::from("cl_billing"), vec![Value::from("")]),
            member(
                Value::from(AUD),
                vec![json!([AUD, "other"]), json!(["other"]), json!([]), json!([AUD, 1])],
            ),
            time_value().prop_map(Some),
            prop_oneof![Just(None), non_null(time_value()).prop_map(Some)],
            prop_oneof![Just(None), non_null(time_value()).prop_map(Some)],
        )
            .boxed();
        (Just(key), header, payload).prop_map(
            |(key, (alg, kid, typ, crit, jku), (iss, sub, aud, exp, nbf, iat))| Hostile {
                key,
                alg,
                kid,
                typ,
                crit,
                jku,
                iss,
                sub,
                aud,
                exp,
                nbf,
                iat,
            },
        )
    })
    .boxed()
}

fn object(members: &[(&str, &Option<Value>)]) -> Value {
    Value::Object(
        members
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| ((*k).to_owned(), v.clone())))
            .collect(),
    )
}

/// Whether the verifier must accept the token (the documented checks, one by one).
fn must_accept(h: &Hostile) -> bool {
    let k = &fx().keys[h.key];
    let str_or_null = |v: &Option<Value>| v.as_ref().is_none_or(|v| v.is_null() || v.is_string());
    let absent_or_int = |v: &Option<Value>| v.as_ref().is_none_or(Value::is_i64);
    let int = |v: &Option<Value>| v.as_ref().and_then(Value::as_i64);
    let typ_ok = h.typ.as_ref().and_then(Value::as_str).is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        let t = t.strip_prefix("application/").unwrap_or(&t);
        t == "at+jwt"
    });
    let aud_ok = match &h.aud {
        Some(Value::String(a)) => a == AUD,
        Some(Value::Array(a)) => a.iter().all(Value::is_string) && a.contains(&Value::from(AUD)),
        _ => false,
    };
    h.alg.as_ref() == Some(&Value::from(k.alg().as_str()))
        && h.kid.as_ref() == Some(&Value::from(k.kid()))
        && typ_ok
        && h.crit.is_none()
        && h.iss.as_ref() == Some(&Value::from(ISS))
        && h.sub.as_ref().is_some_and(Value::is_string)
        && aud_ok
        // (A negative exp is refused too; NOW - LEEWAY > 0 covers it.)
        && int(&h.exp).is_some_and(|e| e > NOW - LEEWAY)
        && absent_or_int(&h.nbf)
        && int(&h.nbf).is_none_or(|n| n <= NOW + LEEWAY)
        && absent_or_int(&h.iat)
        && str_or_null(&h.jku)
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Tokens signed with a published key but with hostile headers and claims (wrong or odd alg,
    /// kid, typ, crit, jku; claims of any JSON type, times at the extremes): no panic, and the
    /// token is accepted exactly when every documented check passes, with the claims it carries.
    #[test]
    fn signed_tokens_with_hostile_headers_and_claims(h in hostile()) {
        let k = &fx().keys[h.key];
        let header = object(&[("alg", &h.alg), ("kid", &h.kid), ("typ", &h.typ), ("crit", &h.crit), ("jku", &h.jku)]);
        let payload = object(&[
            ("iss", &h.iss), ("sub", &h.sub), ("aud", &h.aud),
            ("exp", &h.exp), ("nbf", &h.nbf), ("iat", &h.iat),
        ]);
        let token = sign_parts(k, &header, &payload);
        let got = verify(&token);
        prop_assert_eq!(got.is_ok(), must_accept(&h), "{} {} -> {:?}", header, payload, got);
        if let Ok(c) = got {
            prop_assert_eq!(Some(Value::from(c.exp)), h.exp);
            prop_assert_eq!(c.iss.as_str(), ISS);
            prop_assert!(c.aud.iter().any(|a| a == AUD));
        }
    }
}

proptest! {
    #![proptest_config(cfg(32))]

    /// A token that is valid but for a `null` crit (RFC 7515: a non-empty array of strings), nbf or
    /// iat (RFC 7519: a NumericDate) is refused.
    #[test]
    fn null_crit_nbf_or_iat_is_refused(k in key_index(), which in 0usize..3) {
        let key = &fx().keys[k];
        let mut header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt"});
        let mut payload = json!({"iss": ISS, "sub": "s", "aud": AUD, "exp": NOW + 300});
        match which {
            0 => header["crit"] = Value::Null,
            1 => payload["nbf"] = Value::Null,
            _ => payload["iat"] = Value::Null,
        }
        let token = sign_parts(key, &header, &payload);
        prop_assert!(verify(&token).is_err(), "{} {}", header, payload);
    }
}

/// A `crit` member whose name is written with a JSON escape (`cr\u0069t`) is still `crit`.
#[test]
fn an_escaped_crit_member_is_refused() {
    let key = &fx().keys[0];
    for value in ["null", "[\"exp\"]"] {
        let header = format!(
            r#"{{"alg":"{}","kid":"{}","typ":"at+jwt","cr\u0069t":{value}}}"#,
            key.alg().as_str(),
            key.kid()
        );
        let payload = json!({"iss": ISS, "sub": "s", "aud": AUD, "exp": NOW + 300});
        let token = sign_raw(key, header.as_bytes(), payload.to_string().as_bytes());
        assert!(
            matches!(verify(&token), Err(Error::CritUnsupported)),
            "{header}: {:?}",
            verify(&token)
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// JWKS documents.
// ---------------------------------------------------------------------------------------------------

/// A fresh verifier serving `body`: whether its first fetch succeeded, and what it says about each
/// of the fixture's tokens.
fn with_jwks(body: &[u8]) -> (bool, Vec<Result<castellan_verify::Claims, Error>>) {
    let f = fx();
    let v = verifier(&f.rt, body);
    f.rt.block_on(async {
        let fetched = v.refresh().await.is_ok();
        let mut results = Vec::new();
        for t in &f.tokens {
            results.push(v.verify(t).await);
        }
        (fetched, results)
    })
}

/// A replacement for a JWK member.
fn jwk_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::from(B64.encode(b))),
        prop::collection::vec(any::<u8>(), 250..300).prop_map(|b| Value::from(B64.encode(b))),
        prop::sample::select(vec![
            "ES256", "EdDSA", "RS256", "HS256", "none", "EC", "OKP", "RSA", "oct", "P-256",
            "Ed25519", "P-384", "enc"
        ])
        .prop_map(Value::from),
        json_value(),
    ]
}

proptest! {
    #![proptest_config(cfg(64))]

    /// Arbitrary bodies hold no usable key: the fetch fails, and no token verifies.
    #[test]
    fn arbitrary_jwks_bodies_are_refused(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            any::<String>().prop_map(|s| format!("{{\"keys\":[{s}]}}").into_bytes()),
            json_value().prop_map(|v| serde_json::to_vec(&json!({"keys": [v, {"kty": v}]})).expect("json")),
        ],
    ) {
        let (fetched, results) = with_jwks(&body);
        prop_assert!(!fetched);
        prop_assert!(results.iter().all(Result::is_err));
    }

    /// A truncated JWKS is refused.
    #[test]
    fn a_truncated_jwks_is_refused(cut in any::<Index>()) {
        let body = &fx().jwks;
        let (fetched, results) = with_jwks(&body[..cut.index(body.len())]);
        prop_assert!(!fetched);
        prop_assert!(results.iter().all(Result::is_err));
    }

    /// A key whose kid, alg, kty, crv, use or key material was changed never verifies the token
    /// its original signed. (A `use` of `null` is the same as none, so it is not a change.)
    #[test]
    fn a_changed_key_never_verifies_the_original_token(
        (k, field) in key_index().prop_flat_map(|k| {
            let fields: Vec<String> = jwk(&fx().keys[k]).as_object().expect("object").keys().cloned().collect();
            (Just(k), prop::sample::select(fields))
        }),
        value in jwk_value(),
    ) {
        let mut key = jwk(&fx().keys[k]);
        let field = field.as_str();
        prop_assume!(key[field] != value && !(field == "use" && value.is_null()));
        key[field] = value;
        let (_, results) = with_jwks(&jwks_of(&[key.clone()]));
        prop_assert!(results[k].is_err(), "{}", key);
    }

    /// Random edits of a valid JWKS: no panic. An edit may leave keys usable (white space, another
    /// kid for a key no token names), so acceptance is not checked; a token verifies only with a
    /// key whose parameters are intact.
    #[test]
    fn jwks_edits_never_panic(ms in mutations()) {
        let body = apply_all(&ms, &fx().jwks);
        let _ = with_jwks(&body);
    }
}

// ---------------------------------------------------------------------------------------------------
// Cache-Control.
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Directive {
    MaxAge(u64, bool, bool),
    NoCache(bool),
    NoStore(bool),
    Other(String),
}

fn directive() -> impl Strategy<Value = Directive> {
    prop_oneof![
        (any::<u64>(), any::<bool>(), any::<bool>())
            .prop_map(|(n, q, u)| Directive::MaxAge(n, q, u)),
        any::<bool>().prop_map(Directive::NoCache),
        any::<bool>().prop_map(Directive::NoStore),
        prop::sample::select(vec![
            "public",
            "private",
            "must-revalidate",
            "s-maxage=5",
            "max-age=-1",
            "max-age=",
            "max-age=x",
            "immutable"
        ])
        .prop_map(|s| Directive::Other(s.to_owned())),
    ]
}

fn render(d: &Directive) -> String {
    let case = |s: &str, upper: bool| {
        if upper {
            s.to_ascii_uppercase()
        } else {
            s.to_owned()
        }
    };
    match d {
        Directive::MaxAge(n, quoted, upper) => {
            let v = if *quoted {
                format!("\"{n}\"")
            } else {
                n.to_string()
            };
            format!("{} = {v}", case("max-age", *upper))
        }
        Directive::NoCache(u) => case("no-cache", *u),
        Directive::NoStore(u) => case("no-store", *u),
        Directive::Other(s) => s.clone(),
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Header values made of directives: the result is the smallest max-age, 0 with no-cache or
    /// no-store, none without either.
    #[test]
    fn max_age_is_the_smallest_directive(values in prop::collection::vec(prop::collection::vec(directive(), 0..4), 0..3)) {
        let rendered: Vec<String> = values
            .iter()
            .map(|ds| ds.iter().map(render).collect::<Vec<_>>().join(", "))
            .collect();
        let expected = values
            .iter()
            .flatten()
            .filter_map(|d| match d {
                Directive::MaxAge(n, ..) => Some(*n),
                Directive::NoCache(_) | Directive::NoStore(_) => Some(0),
                Directive::Other(_) => None,
            })
            .min()
            .map(Duration::from_secs);
        prop_assert_eq!(parse_max_age(rendered.iter().map(String::as_str)), expected, "{:?}", rendered);
    }

    /// Arbitrary header values: no panic, and a result only when a max-age, no-cache or no-store
    /// directive is there.
    #[test]
    fn max_age_survives_arbitrary_values(values in prop::collection::vec(prop_oneof![any::<String>(), "[a-zA-Z0-9=,\" -]{0,40}"], 0..3)) {
        if parse_max_age(values.iter().map(String::as_str)).is_some() {
            let lower = values.join(",").to_ascii_lowercase();
            prop_assert!(lower.contains("max-age") || lower.contains("no-cache") || lower.contains("no-store"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The axum layer: Authorization headers.
// ---------------------------------------------------------------------------------------------------

fn app() -> &'static axum::Router {
    static APP: OnceLock<axum::Router> = OnceLock::new();
    APP.get_or_init(|| {
        axum::Router::new()
            .route("/", get(|| async { "ok" }))
            .route_layer(VerifyLayer::new(fx().verifier.clone()))
    })
}

fn call(values: &[HeaderValue]) -> StatusCode {
    let mut request = Request::get("/");
    for v in values {
        request = request.header(header::AUTHORIZATION, v.clone());
    }
    let request = request.body(Body::empty()).expect("request");
    fx().rt
        .block_on(app().clone().oneshot(request))
        .expect("infallible")
        .status()
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Arbitrary Authorization headers never reach the handler, and never crash the layer.
    #[test]
    fn arbitrary_authorization_headers_are_refused(
        values in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..80),
                "(Bearer|bearer|BEARER|Basic)? {0,3}[ -~]{0,80}".prop_map(String::into_bytes),
            ],
            0..3,
        ),
    ) {
        let values: Vec<HeaderValue> = values.iter().filter_map(|v| HeaderValue::from_bytes(v).ok()).collect();
        prop_assert_ne!(call(&values), StatusCode::OK);
    }

    /// `Bearer <token>` with any scheme case and surrounding spaces passes; the same token with one
    /// character changed, or sent twice, does not.
    #[test]
    fn bearer_tokens_are_read_exactly(
        k in key_index(),
        scheme in "[Bb][Ee][Aa][Rr][Ee][Rr]",
        before in " {1,3}",
        after in " {0,3}",
        at in any::<Index>(),
        c in prop::sample::select(&TOKEN_CHARS[..TOKEN_CHARS.len() - 4]),
    ) {
        let token = &fx().tokens[k];
        let value = |t: &str| HeaderValue::from_str(&format!("{scheme}{before}{t}{after}")).expect("value");
        prop_assert_eq!(call(&[value(token)]), StatusCode::OK);
        prop_assert_ne!(call(&[value(token), value(token)]), StatusCode::OK);
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != c);
        bytes[i] = c;
        let edited = String::from_utf8(bytes).expect("ascii");
        prop_assert_ne!(call(&[value(&edited)]), StatusCode::OK, "{:?}", edited);
    }
}

/// Tests named after the bug they pin.
#[path = "regression.rs"]
mod regression;
