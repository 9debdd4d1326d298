//! Robustness of castellan-core's parsers of untrusted input: arbitrary bytes and structure-aware
//! mutations of valid inputs (made by the crate's own API) must never panic, and inputs that are
//! certainly malformed must be refused with an error (or, for the doctor, an error finding).
//!
//! Strict assertions are used only where the mutation certainly breaks the input (a truncated
//! ciphertext, a changed byte under a signature or MAC, a torn ACL entry). Where a mutation may leave
//! the input valid (a flipped byte in PEM base64, in a certificate's name, in a key's version), the
//! test only asserts that nothing panics, and says so.
//!
//! Case counts are modest so that the suite stays fast in debug builds; set `PROPTEST_CASES` to run
//! every property with more cases.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD as B64};
use castellan_core::doctor::files::{Acl, AclEntry, AclTag};
use castellan_core::doctor::token::{JwksDoc, TokenExpectations, check_jwks, check_token};
use castellan_core::doctor::{ChainRequest, Input, check_chain, check_presented, has_errors};
use castellan_core::envelope::{DataKey, MasterKey};
use castellan_core::pki::{
    self, CaOptions, IssueRequest, IssuedSet, Issuer, KeyType, NewCa, Profile, Purpose,
    RevocationReason, RevokedCert, SetPems,
};
use castellan_core::token::{AccessClaims, sign_access_token};
use castellan_core::token::{Alg, SigningKey};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const HOST: &str = "app.svc.test";
const ISS: &str = "https://castellan.test";
const AUD: &str = "billing-api";

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
// Fixture: valid inputs made by the crate's own API, built once.
// ---------------------------------------------------------------------------------------------------

struct Fixture {
    ca: NewCa,
    issuer: Issuer,
    set: IssuedSet,
    leaf_der: Vec<u8>,
    inter_der: Vec<u8>,
    root_der: Vec<u8>,
    key_der: Vec<u8>,
    csr_der: Vec<u8>,
    signing_key: SigningKey,
    es256_der: Vec<u8>,
    ed25519_der: Vec<u8>,
    token: String,
    jwk: Value,
}

fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = pki::create_ca(&CaOptions::root(), &CaOptions::intermediate(), NOW).expect("ca");
        let issuer = Issuer::from_ca(&ca.root, &ca.intermediate).expect("issuer");
        let profile = Profile::builtin("server").expect("server profile");
        let set = issuer.issue(&profile, &request(), NOW).expect("issue");
        let ders = |text: &str| -> Vec<Vec<u8>> {
            pem::parse_many(text)
                .expect("pem")
                .into_iter()
                .map(pem::Pem::into_contents)
                .collect()
        };
        let chain = ders(&set.chain_pem);
        let key_der = ders(set.key_pem.as_deref().expect("key")).remove(0);
        let (_, csr_pem) = pki::new_key_and_csr(KeyType::P256, Some("app")).expect("csr");
        let csr_der = ders(&csr_pem).remove(0);
        let (signing_key, es256_der) = SigningKey::generate(Alg::ES256, None).expect("es256");
        let (_, ed25519_der) = SigningKey::generate(Alg::EdDSA, None).expect("ed25519");
        let token = sign_access_token(&signing_key, &claims()).expect("token");
        let jwk = serde_json::to_value(signing_key.jwk()).expect("jwk");
        Fixture {
            leaf_der: chain[0].clone(),
            inter_der: chain[1].clone(),
            root_der: ca.root.cert_der.clone(),
            key_der,
            csr_der,
            es256_der: es256_der.to_vec(),
            ed25519_der: ed25519_der.to_vec(),
            ca,
            issuer,
            set,
            signing_key,
            token,
            jwk,
        }
    })
}

fn request() -> IssueRequest {
    IssueRequest {
        dns_names: vec![HOST.to_owned()],
        ttl_secs: Some(3600),
        ..IssueRequest::default()
    }
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

fn pem_of(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn certs_pem(ders: &[&[u8]]) -> String {
    ders.iter().map(|d| pem_of("CERTIFICATE", d)).collect()
}

fn jwks_body(jwk: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": [jwk] })).expect("jwks")
}

/// The header length and content length of the DER element at `off`.
fn der_header(b: &[u8], off: usize) -> (usize, usize) {
    let first = usize::from(b[off + 1]);
    if first < 0x80 {
        return (2, first);
    }
    let n = first & 0x7f;
    let len = b[off + 2..off + 2 + n]
        .iter()
        .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
    (2 + n, len)
}

/// The byte range of the first element inside the outer SEQUENCE: the part a signature covers
/// (tbsCertificate, certificationRequestInfo).
fn signed_part(der: &[u8]) -> Range<usize> {
    let (h0, _) = der_header(der, 0);
    let (h1, l1) = der_header(der, h0);
    h0..h0 + h1 + l1
}

// ---------------------------------------------------------------------------------------------------
// Generic byte mutations.
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    /// Keep a proper prefix.
    Truncate(Index),
    /// XOR one byte with a nonzero value.
    Flip(Index, u8),
    /// Overwrite one byte.
    Set(Index, u8),
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Remove a range.
    Delete(Index, Index),
    /// Repeat a range right after itself.
    Duplicate(Index, Index),
    /// Copy a range to another place.
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

fn range(len: usize, a: &Index, b: &Index) -> Range<usize> {
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

fn mutate_text(ms: &[Mutation], text: &str) -> String {
    String::from_utf8_lossy(&apply_all(ms, text.as_bytes())).into_owned()
}

// ---------------------------------------------------------------------------------------------------
// Envelope encryption: sealed values and wrapped data keys from the store.
// ---------------------------------------------------------------------------------------------------

fn keys_for_envelope() -> &'static (MasterKey, DataKey, Vec<u8>) {
    static K: OnceLock<(MasterKey, DataKey, Vec<u8>)> = OnceLock::new();
    K.get_or_init(|| {
        let (master, _) = MasterKey::generate().expect("master");
        let dek = DataKey::generate().expect("dek");
        let wrapped = master.wrap(&dek).expect("wrap");
        (master, dek, wrapped)
    })
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Any edit of a sealed value (truncation, flipped or inserted bytes, ...) is refused.
    #[test]
    fn an_edited_sealed_value_never_opens(
        plain in prop::collection::vec(any::<u8>(), 0..64),
        context in "[a-z:-]{0,24}",
        ms in mutations(),
    ) {
        let (_, dek, _) = keys_for_envelope();
        let sealed = dek.seal(&context, &plain).expect("seal");
        let opened = dek.open(&context, &sealed).expect("open");
        prop_assert_eq!(opened.as_slice(), plain.as_slice());
        let edited = apply_all(&ms, &sealed);
        prop_assume!(edited != sealed);
        prop_assert!(dek.open(&context, &edited).is_err());
    }

    /// Every proper prefix of a sealed value is refused.
    #[test]
    fn a_truncated_sealed_value_never_opens(
        plain in prop::collection::vec(any::<u8>(), 0..64),
        cut in any::<Index>(),
    ) {
        let (_, dek, _) = keys_for_envelope();
        let sealed = dek.seal("ctx", &plain).expect("seal");
        let keep = cut.index(sealed.len());
        prop_assert!(dek.open("ctx", &sealed[..keep]).is_err());
    }

    /// Arbitrary bytes never open, as a value or as a wrapped data key.
    #[test]
    fn arbitrary_bytes_never_open(bytes in prop::collection::vec(any::<u8>(), 0..128), id in ".{0,16}") {
        let (master, dek, _) = keys_for_envelope();
        prop_assert!(dek.open("ctx", &bytes).is_err());
        prop_assert!(master.unwrap(&id, &bytes).is_err());
    }

    /// Any edit of a wrapped data key is refused.
    #[test]
    fn an_edited_wrapped_data_key_never_unwraps(ms in mutations()) {
        let (master, dek, wrapped) = keys_for_envelope();
        let edited = apply_all(&ms, wrapped);
        prop_assume!(&edited != wrapped);
        prop_assert!(master.unwrap(dek.id(), &edited).is_err());
    }

    /// A master key file is accepted exactly when it holds 32 base64 bytes (padded or not, with
    /// surrounding white space), and then it is the key of those bytes.
    #[test]
    fn master_key_text_is_32_base64_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..48),
        pad in any::<bool>(),
        ws in "[ \t\r\n]{0,3}",
    ) {
        let encoded = if pad { STANDARD.encode(&bytes) } else { STANDARD_NO_PAD.encode(&bytes) };
        let text = format!("{ws}{encoded}{ws}");
        match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(raw) => {
                let parsed = MasterKey::from_base64(&text).expect("32 bytes must be accepted");
                let direct = MasterKey::from_bytes(raw).expect("from bytes");
                prop_assert_eq!(parsed.check_value(), direct.check_value());
            }
            Err(_) => prop_assert!(MasterKey::from_base64(&text).is_err()),
        }
    }

    /// Arbitrary text as a master key file: no panic, and an accepted text decodes to 32 bytes.
    #[test]
    fn master_key_arbitrary_text(text in prop_oneof![any::<String>(), "[A-Za-z0-9+/=\\s]{0,60}"]) {
        if MasterKey::from_base64(&text).is_ok() {
            let t = text.trim();
            let decoded = STANDARD.decode(t).or_else(|_| STANDARD_NO_PAD.decode(t));
            prop_assert_eq!(decoded.map(|d| d.len()).ok(), Some(32));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// POSIX ACL xattr (doctor files).
// ---------------------------------------------------------------------------------------------------

const UNDEFINED_ID: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct AclSpec {
    user_obj: u16,
    users: Vec<(u32, u16)>,
    group_obj: u16,
    groups: Vec<(u32, u16)>,
    mask: Option<u16>,
    other: u16,
}

impl AclSpec {
    /// Entries in the kernel's order: (tag code, perm, id).
    fn raw(&self) -> Vec<(u16, u16, u32)> {
        let mut v = vec![(0x01, self.user_obj, UNDEFINED_ID)];
        v.extend(self.users.iter().map(|&(id, p)| (0x02, p, id)));
        v.push((0x04, self.group_obj, UNDEFINED_ID));
        v.extend(self.groups.iter().map(|&(id, p)| (0x08, p, id)));
        if let Some(m) = self.mask {
            v.push((0x10, m, UNDEFINED_ID));
        }
        v.push((0x20, self.other, UNDEFINED_ID));
        v
    }

    fn entries(&self) -> Vec<AclEntry> {
        self.raw()
            .into_iter()
            .map(|(tag, perm, id)| AclEntry {
                tag: match tag {
                    0x01 => AclTag::UserObj,
                    0x02 => AclTag::User(id),
                    0x04 => AclTag::GroupObj,
                    0x08 => AclTag::Group(id),
                    0x10 => AclTag::Mask,
                    _ => AclTag::Other,
                },
                perm: u32::from(perm),
            })
            .collect()
    }
}

fn encode_acl(version: u32, entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

fn acl_spec() -> impl Strategy<Value = AclSpec> {
    let perm = 0u16..8;
    let named = prop::collection::btree_map(0u32..UNDEFINED_ID, 0u16..8, 0..4)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>());
    (
        perm.clone(),
        named.clone(),
        perm.clone(),
        named,
        prop::option::of(perm.clone()),
        perm,
    )
        .prop_map(|(user_obj, users, group_obj, groups, mask, other)| {
            let needs_mask = !users.is_empty() || !groups.is_empty();
            AclSpec {
                user_obj,
                mask: if needs_mask {
                    Some(mask.unwrap_or(7))
                } else {
                    mask
                },
                users,
                group_obj,
                groups,
                other,
            }
        })
}

/// An accepted attribute is read faithfully: whole 8-byte entries after version 2, each entry's tag,
/// permission bits and (for named entries) id as encoded, and the required entries present.
fn assert_faithful(bytes: &[u8], acl: &Acl) {
    assert_eq!(bytes[..4], 2u32.to_le_bytes(), "version");
    let body = &bytes[4..];
    assert!(
        !body.is_empty() && body.len().is_multiple_of(8),
        "whole entries"
    );
    assert_eq!(acl.entries().len(), body.len() / 8);
    for (e, raw) in acl.entries().iter().zip(body.chunks_exact(8)) {
        let tag = u16::from_le_bytes([raw[0], raw[1]]);
        let perm = u32::from(u16::from_le_bytes([raw[2], raw[3]]));
        let id = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        assert!(perm <= 7, "perm {perm:#o} beyond rwx accepted");
        assert_eq!(e.perm, perm);
        let expected = match tag {
            0x01 => AclTag::UserObj,
            0x02 => AclTag::User(id),
            0x04 => AclTag::GroupObj,
            0x08 => AclTag::Group(id),
            0x10 => AclTag::Mask,
            0x20 => AclTag::Other,
            t => panic!("unknown tag {t:#x} accepted"),
        };
        assert_eq!(e.tag, expected);
        assert!(!matches!(
            e.tag,
            AclTag::User(UNDEFINED_ID) | AclTag::Group(UNDEFINED_ID)
        ));
    }
    for required in [AclTag::UserObj, AclTag::GroupObj, AclTag::Other] {
        assert_eq!(
            acl.entries().iter().filter(|e| e.tag == required).count(),
            1,
            "{required:?} exactly once"
        );
    }
}

/// Changes that certainly make a valid attribute malformed.
#[derive(Debug, Clone)]
enum AclBreak {
    /// Keep a proper prefix (the `other` entry, last in kernel order, is then torn or gone).
    Truncate(Index),
    /// Another version.
    Version(u32),
    /// Permission bits beyond `rwx` in one entry.
    PermTooBig(Index, u16),
    /// A copy of one entry inserted somewhere.
    DuplicateEntry(Index, Index),
    /// The owner, owning group or other entry removed (0, 1, 2).
    DropRequired(u8),
    /// The mask removed while named entries exist.
    DropMask,
    /// One entry's tag replaced by an unknown one.
    UnknownTag(Index, u16),
    /// A named entry with the undefined id.
    UndefinedNamedId(Index, bool),
    /// 1 to 7 bytes of a torn entry appended.
    TornTail(Vec<u8>),
    /// The header only.
    HeaderOnly,
}

fn acl_break() -> impl Strategy<Value = AclBreak> {
    prop_oneof![
        any::<Index>().prop_map(AclBreak::Truncate),
        any::<u32>()
            .prop_filter("not 2", |v| *v != 2)
            .prop_map(AclBreak::Version),
        (any::<Index>(), 8u16..).prop_map(|(i, p)| AclBreak::PermTooBig(i, p)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| AclBreak::DuplicateEntry(a, b)),
        (0u8..3).prop_map(AclBreak::DropRequired),
        Just(AclBreak::DropMask),
        (
            any::<Index>(),
            any::<u16>().prop_filter("unknown", |t| {
                ![0x01, 0x02, 0x04, 0x08, 0x10, 0x20].contains(t)
            })
        )
            .prop_map(|(i, t)| AclBreak::UnknownTag(i, t)),
        (any::<Index>(), any::<bool>()).prop_map(|(i, g)| AclBreak::UndefinedNamedId(i, g)),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(AclBreak::TornTail),
        Just(AclBreak::HeaderOnly),
    ]
}

fn break_acl(spec: &AclSpec, b: &AclBreak) -> Vec<u8> {
    let mut entries = spec.raw();
    let n = entries.len();
    match b {
        AclBreak::Truncate(i) => {
            let full = encode_acl(2, &entries);
            return full[..i.index(full.len())].to_vec();
        }
        AclBreak::Version(v) => return encode_acl(*v, &entries),
        AclBreak::PermTooBig(i, p) => entries[i.index(n)].1 = *p,
        AclBreak::DuplicateEntry(i, at) => {
            let e = entries[i.index(n)];
            entries.insert(at.index(n + 1), e);
        }
        AclBreak::DropRequired(which) => {
            let tag = [0x01, 0x04, 0x20][usize::from(*which)];
            entries.retain(|e| e.0 != tag);
        }
        AclBreak::DropMask => {
            if spec.users.is_empty() && spec.groups.is_empty() {
                // Without named entries a missing mask is valid: drop `other` instead.
                entries.retain(|e| e.0 != 0x20);
            } else {
                entries.retain(|e| e.0 != 0x10);
            }
        }
        AclBreak::UnknownTag(i, t) => entries[i.index(n)].0 = *t,
        AclBreak::UndefinedNamedId(i, group) => {
            entries[i.index(n)] = (if *group { 0x08 } else { 0x02 }, 4, UNDEFINED_ID)
        }
        AclBreak::TornTail(tail) => {
            let mut out = encode_acl(2, &entries);
            out.extend_from_slice(tail);
            return out;
        }
        AclBreak::HeaderOnly => return encode_acl(2, &[]),
    }
    encode_acl(2, &entries)
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Arbitrary bytes: no panic, and whatever is accepted is read faithfully.
    #[test]
    fn acl_arbitrary_bytes(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            // Version 2 followed by anything, to get past the first check.
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| [2u8, 0, 0, 0].into_iter().chain(b).collect()),
        ],
    ) {
        if let Ok(acl) = Acl::from_xattr(&bytes) {
            assert_faithful(&bytes, &acl);
        }
    }

    /// Valid attributes (as the kernel writes them) are accepted with their entries.
    #[test]
    fn acl_valid_attributes_are_read(spec in acl_spec()) {
        let bytes = encode_acl(2, &spec.raw());
        let acl = Acl::from_xattr(&bytes).expect("a valid ACL must be accepted");
        let expected = spec.entries();
        prop_assert_eq!(acl.entries(), expected.as_slice());
    }

    /// A torn entry, a wrong version, bits beyond rwx, a repeated or missing entry, an unknown tag:
    /// always refused.
    #[test]
    fn acl_malformed_attributes_are_refused(spec in acl_spec(), b in acl_break()) {
        let bytes = break_acl(&spec, &b);
        prop_assert!(Acl::from_xattr(&bytes).is_err(), "accepted {:?}: {:02x?}", b, bytes);
    }

    /// Random edits of a valid attribute: no panic. An edit may leave it valid (another id or
    /// permission), so only faithfulness is checked when it is accepted.
    #[test]
    fn acl_random_edits(spec in acl_spec(), ms in mutations()) {
        let bytes = apply_all(&ms, &encode_acl(2, &spec.raw()));
        if let Ok(acl) = Acl::from_xattr(&bytes) {
            assert_faithful(&bytes, &acl);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Certificate parsing (parse_cert_pem / parse_certs_pem / parse_cert_der).
// ---------------------------------------------------------------------------------------------------

fn any_cert_der() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        Just(fx().leaf_der.as_slice()),
        Just(fx().inter_der.as_slice()),
        Just(fx().root_der.as_slice()),
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Arbitrary text or bytes are never a certificate.
    #[test]
    fn cert_parsers_refuse_arbitrary_input(
        text in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9+/=\n-]{0,200}",
            "[A-Za-z0-9+/=\n]{0,200}".prop_map(|b| format!("-----BEGIN CERTIFICATE-----\n{b}\n-----END CERTIFICATE-----\n")),
        ],
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        prop_assert!(pki::parse_cert_pem(&text).is_err());
        prop_assert!(pki::parse_certs_pem(&text).is_err());
        prop_assert!(pki::parse_cert_der(&bytes).is_err());
    }

    /// A truncated certificate, or one followed by extra bytes, is refused (DER and PEM).
    #[test]
    fn truncated_or_extended_certificates_are_refused(
        der in any_cert_der(),
        cut in any::<Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let short = &der[..cut.index(der.len())];
        prop_assert!(pki::parse_cert_der(short).is_err());
        prop_assert!(pki::parse_cert_pem(&pem_of("CERTIFICATE", short)).is_err());
        let long: Vec<u8> = der.iter().copied().chain(extra).collect();
        prop_assert!(pki::parse_cert_der(&long).is_err());
        prop_assert!(pki::parse_certs_pem(&pem_of("CERTIFICATE", &long)).is_err());
    }

    /// A block other than CERTIFICATE among certificates is refused.
    #[test]
    fn a_foreign_pem_block_is_refused(
        tag in "[A-Z]{1,10}( [A-Z]{1,10}){0,2}".prop_filter("not CERTIFICATE", |t| t != "CERTIFICATE"),
        content in prop::collection::vec(any::<u8>(), 0..64),
        at in 0usize..3,
    ) {
        let mut blocks = vec![
            pem_of("CERTIFICATE", &fx().leaf_der),
            pem_of("CERTIFICATE", &fx().inter_der),
        ];
        blocks.insert(at, pem_of(&tag, &content));
        prop_assert!(pki::parse_certs_pem(&blocks.concat()).is_err());
        prop_assert!(pki::parse_cert_pem(&blocks.concat()).is_err());
    }

    /// Random edits of PEM text and DER: no panic. An edit may leave a certificate that still
    /// parses (a flipped byte in a name, whitespace in the PEM), so acceptance is not checked.
    #[test]
    fn cert_parsers_survive_edits(der in any_cert_der(), ms in mutations(), text_ms in mutations()) {
        let _ = pki::parse_cert_der(&apply_all(&ms, der));
        let text = mutate_text(&text_ms, &fx().set.chain_pem);
        let _ = pki::parse_certs_pem(&text);
        let _ = pki::parse_cert_pem(&text);
    }
}

// ---------------------------------------------------------------------------------------------------
// verify_set: the files of an output set read back from disk (or from the server, for the agent).
// ---------------------------------------------------------------------------------------------------

/// The DER blocks of the five files of the fixture's set: cert, chain, bundle, root, key.
fn set_blocks() -> Vec<Vec<Vec<u8>>> {
    let f = fx();
    vec![
        vec![f.leaf_der.clone()],
        vec![f.leaf_der.clone(), f.inter_der.clone()],
        vec![f.root_der.clone(), f.inter_der.clone()],
        vec![f.root_der.clone()],
        vec![f.key_der.clone()],
    ]
}

fn set_texts(blocks: &[Vec<Vec<u8>>]) -> Vec<String> {
    blocks
        .iter()
        .enumerate()
        .map(|(i, bs)| {
            let tag = if i == 4 { "PRIVATE KEY" } else { "CERTIFICATE" };
            bs.iter().map(|b| pem_of(tag, b)).collect()
        })
        .collect()
}

fn verify_texts(t: &[String]) -> Result<pki::CertInfo, pki::PkiError> {
    pki::verify_set(
        &SetPems {
            cert_pem: &t[0],
            chain_pem: &t[1],
            ca_bundle_pem: &t[2],
            root_pem: &t[3],
            key_pem: Some(&t[4]),
        },
        Purpose::Server,
        NOW,
    )
}

#[test]
fn the_unmodified_fixtures_are_valid() {
    let f = fx();
    verify_texts(&set_texts(&set_blocks())).expect("the set verifies");
    pki::verify_set(&f.set.pems(), Purpose::Server, NOW).expect("the issued set verifies");
    let csr_pem = pem_of("CERTIFICATE REQUEST", &f.csr_der);
    let profile = Profile::builtin("server").expect("profile");
    f.issuer
        .sign_csr(&profile, &csr_pem, &request(), NOW)
        .expect("the CSR is signed");
    Issuer::new(
        &f.ca.intermediate.cert_pem,
        &f.ca.intermediate.key_pkcs8_der,
        &f.ca.root.cert_pem,
        "",
    )
    .expect("issuer from stored material");
    let findings = doctor_chain(&chain_file(&f.leaf_der), &key_file(), &f.ca.root.cert_pem);
    assert!(!has_errors(&findings), "{findings:#?}");
    let findings = check_token(&f.token, Some(&jwks_doc(&f.jwk)), &expectations(), NOW);
    assert!(!has_errors(&findings), "{findings:#?}");
    let findings = check_jwks(&[jwks_doc(&f.jwk)], Some(&f.token), NOW);
    assert!(!has_errors(&findings), "{findings:#?}");
    for (alg, der) in [(Alg::ES256, &f.es256_der), (Alg::EdDSA, &f.ed25519_der)] {
        SigningKey::from_pkcs8(alg, der).expect("signing key reloads");
    }
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Any changed byte of the leaf (in cert.pem and chain.pem alike) is refused: it breaks the
    /// encoding, the issuing CA's signature, or the key match.
    #[test]
    fn verify_set_refuses_a_leaf_with_a_changed_byte(at in any::<Index>(), x in 1u8..=255) {
        let mut blocks = set_blocks();
        let i = at.index(blocks[0][0].len());
        blocks[0][0][i] ^= x;
        blocks[1][0][i] ^= x;
        prop_assert!(verify_texts(&set_texts(&blocks)).is_err(), "byte {} ^ {:#04x} accepted", i, x);
    }

    /// Any changed byte of the intermediate (in chain.pem and ca-bundle.pem alike) is refused: it
    /// breaks the encoding, the root's signature, or the leaf's issuer.
    #[test]
    fn verify_set_refuses_an_intermediate_with_a_changed_byte(at in any::<Index>(), x in 1u8..=255) {
        let mut blocks = set_blocks();
        let i = at.index(blocks[1][1].len());
        blocks[1][1][i] ^= x;
        blocks[2][1][i] ^= x;
        prop_assert!(verify_texts(&set_texts(&blocks)).is_err(), "byte {} ^ {:#04x} accepted", i, x);
    }

    /// A truncated block in any of the five files is refused.
    #[test]
    fn verify_set_refuses_a_truncated_block(file in 0usize..5, block in any::<Index>(), cut in any::<Index>()) {
        let mut blocks = set_blocks();
        let b = block.index(blocks[file].len());
        let keep = cut.index(blocks[file][b].len());
        blocks[file][b].truncate(keep);
        prop_assert!(verify_texts(&set_texts(&blocks)).is_err());
    }

    /// Random edits of any file's text, and of the root's or the key's DER: no panic. They may
    /// leave the set valid (PEM whitespace; a root is a trust anchor whose own signature no TLS peer
    /// checks; PKCS#8 version 0 → 1 is still a key), so only the absence of panics is checked.
    #[test]
    fn verify_set_survives_edits(file in 0usize..5, ms in mutations(), der_ms in mutations()) {
        let mut texts = set_texts(&set_blocks());
        texts[file] = mutate_text(&ms, &texts[file]);
        let _ = verify_texts(&texts);
        let mut blocks = set_blocks();
        blocks[3][0] = apply_all(&der_ms, &blocks[3][0]);
        blocks[2][0] = blocks[3][0].clone();
        let _ = verify_texts(&set_texts(&blocks));
        let mut blocks = set_blocks();
        blocks[4][0] = apply_all(&der_ms, &blocks[4][0]);
        let _ = verify_texts(&set_texts(&blocks));
    }
}

// ---------------------------------------------------------------------------------------------------
// CSRs (Issuer::sign_csr).
// ---------------------------------------------------------------------------------------------------

fn sign_csr(pem_text: &str) -> Result<IssuedSet, pki::PkiError> {
    let profile = Profile::builtin("server").expect("profile");
    fx().issuer.sign_csr(&profile, pem_text, &request(), NOW)
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Any changed byte of the certificationRequestInfo breaks the CSR's self-signature (or its
    /// encoding): refused.
    #[test]
    fn sign_csr_refuses_a_changed_request_info(at in any::<Index>(), x in 1u8..=255) {
        let mut der = fx().csr_der.clone();
        let signed = signed_part(&der);
        let i = signed.start + at.index(signed.len());
        der[i] ^= x;
        prop_assert!(sign_csr(&pem_of("CERTIFICATE REQUEST", &der)).is_err(), "byte {} ^ {:#04x} accepted", i, x);
    }

    /// A truncated CSR, or one with bytes after it, is refused.
    #[test]
    fn sign_csr_refuses_truncated_or_extended_csrs(
        cut in any::<Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let der = &fx().csr_der;
        let short = &der[..cut.index(der.len())];
        prop_assert!(sign_csr(&pem_of("CERTIFICATE REQUEST", short)).is_err());
        let long: Vec<u8> = der.iter().copied().chain(extra).collect();
        prop_assert!(sign_csr(&pem_of("CERTIFICATE REQUEST", &long)).is_err());
    }

    /// Arbitrary text is never a CSR.
    #[test]
    fn sign_csr_refuses_arbitrary_text(
        text in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9+/=\n]{0,200}".prop_map(|b| format!("-----BEGIN CERTIFICATE REQUEST-----\n{b}\n-----END CERTIFICATE REQUEST-----\n")),
        ],
    ) {
        prop_assert!(sign_csr(&text).is_err());
    }

    /// Random edits of the PEM text or of the DER anywhere (the signature and its algorithm are
    /// outside the signed part): no panic. Acceptance is not checked: an edit of the PEM text may
    /// change nothing.
    #[test]
    fn sign_csr_survives_edits(ms in mutations(), der_ms in mutations()) {
        let csr_pem = pem_of("CERTIFICATE REQUEST", &fx().csr_der);
        let _ = sign_csr(&mutate_text(&ms, &csr_pem));
        let _ = sign_csr(&pem_of("CERTIFICATE REQUEST", &apply_all(&der_ms, &fx().csr_der)));
    }
}

// ---------------------------------------------------------------------------------------------------
// Stored or imported CA material (Issuer::new, import_ca) and token signing keys.
// ---------------------------------------------------------------------------------------------------

fn issuer_new(ca_pem: &str, key: &[u8], root_pem: &str, intermediates: &str) -> bool {
    Issuer::new(ca_pem, key, root_pem, intermediates).is_ok()
}

proptest! {
    #![proptest_config(cfg(64))]

    /// A truncated or arbitrary CA key is refused.
    #[test]
    fn issuer_new_refuses_truncated_or_arbitrary_keys(
        cut in any::<Index>(),
        junk in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let ca = &fx().ca;
        let key = &ca.intermediate.key_pkcs8_der;
        prop_assert!(!issuer_new(&ca.intermediate.cert_pem, &key[..cut.index(key.len())], &ca.root.cert_pem, ""));
        prop_assert!(!issuer_new(&ca.intermediate.cert_pem, &junk, &ca.root.cert_pem, ""));
    }

    /// Any changed byte of the issuing CA's certificate is refused: the root's signature over it,
    /// its encoding, or its key match breaks.
    #[test]
    fn issuer_new_refuses_a_ca_certificate_with_a_changed_byte(at in any::<Index>(), x in 1u8..=255) {
        let ca = &fx().ca;
        let mut der = ca.intermediate.cert_der.clone();
        let i = at.index(der.len());
        der[i] ^= x;
        prop_assert!(
            !issuer_new(&pem_of("CERTIFICATE", &der), &ca.intermediate.key_pkcs8_der, &ca.root.cert_pem, ""),
            "byte {} ^ {:#04x} accepted", i, x
        );
    }

    /// Random edits of any input: no panic (an edit of PEM text or of a key's encoding may leave it
    /// valid, so acceptance is not checked).
    #[test]
    fn issuer_new_survives_edits(which in 0usize..4, ms in mutations()) {
        let ca = &fx().ca;
        let mut texts = [
            ca.intermediate.cert_pem.clone(),
            String::new(),
            ca.root.cert_pem.clone(),
            ca.root.cert_pem.clone(),
        ];
        let mut key = ca.intermediate.key_pkcs8_der.to_vec();
        if which == 1 {
            key = apply_all(&ms, &key);
        } else {
            texts[which] = mutate_text(&ms, &texts[which]);
        }
        let _ = issuer_new(&texts[0], &key, &texts[2], &texts[3]);
    }
}

proptest! {
    #![proptest_config(cfg(24))]

    /// import_ca with edited key PEM or chain PEM: no panic; a truncated key is refused.
    #[test]
    fn import_ca_survives_edits(ms in mutations(), which in 0usize..3, cut in any::<Index>()) {
        let ca = &fx().ca;
        let key_pem = pem_of("PRIVATE KEY", &ca.intermediate.key_pkcs8_der);
        let (mut cert, mut key, mut chain) =
            (ca.intermediate.cert_pem.clone(), key_pem.clone(), ca.root.cert_pem.clone());
        match which {
            0 => cert = mutate_text(&ms, &cert),
            1 => key = mutate_text(&ms, &key),
            _ => chain = mutate_text(&ms, &chain),
        }
        let _ = pki::import_ca(&cert, &key, Some(&chain), NOW);
        let der = &ca.intermediate.key_pkcs8_der;
        let short = pem_of("PRIVATE KEY", &der[..cut.index(der.len())]);
        prop_assert!(pki::import_ca(&ca.intermediate.cert_pem, &short, Some(&ca.root.cert_pem), NOW).is_err());
    }
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Token signing keys from the store: truncated or arbitrary PKCS#8 is refused, edited PKCS#8
    /// does not panic (an edit may keep a valid key: the version, or the private scalar).
    #[test]
    fn signing_keys_refuse_truncated_or_arbitrary_pkcs8(
        ed in any::<bool>(),
        cut in any::<Index>(),
        junk in prop::collection::vec(any::<u8>(), 0..128),
        ms in mutations(),
    ) {
        let (alg, der) = if ed { (Alg::EdDSA, &fx().ed25519_der) } else { (Alg::ES256, &fx().es256_der) };
        prop_assert!(SigningKey::from_pkcs8(alg, &der[..cut.index(der.len())]).is_err());
        for alg in Alg::ALL {
            if alg != Alg::RS256 {
                prop_assert!(SigningKey::from_pkcs8(alg, &junk).is_err());
            }
        }
        let _ = SigningKey::from_pkcs8(alg, &apply_all(&ms, der));
    }
}

// ---------------------------------------------------------------------------------------------------
// Profiles: DNS name normalisation, patterns, URIs, IPs, common names; names of enums.
// ---------------------------------------------------------------------------------------------------

/// A DNS name as Castellan certifies it: lowercase LDH-or-underscore labels of 1..=63 characters,
/// at most 253 in all, no trailing dot, not an IP address; a wildcard only as the whole leftmost label
/// followed by two labels or more.
fn well_formed_dns(name: &str) -> bool {
    if name.len() > 253 || name.parse::<IpAddr>().is_ok() {
        return false;
    }
    let (labels, wildcard) = match name.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (name, false),
    };
    let labels: Vec<&str> = labels.split('.').collect();
    (!wildcard || labels.len() >= 2)
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

fn dns_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[*]?[a-zA-Z0-9_.*-]{0,40}",
        "([a-zA-Z0-9-]{1,8}\\.){0,4}[a-z]{1,6}\\.?",
        " ?(\\*\\.)?[a-zA-Z0-9]{1,5}(\\.[a-zA-Z0-9]{1,5}){0,3} ?",
        "[0-9.:a-f]{1,20}",
        "[a-z]{60,70}(\\.[a-z]{60,70}){0,4}",
    ]
}

fn allow_all() -> Profile {
    Profile::allow_all("any", Purpose::Server)
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Arbitrary names through an allow-all profile: no panic, and every accepted name is
    /// well formed and normalized (lowercase, no duplicates); accepted URIs are `scheme:rest` of
    /// printable ASCII; an accepted common name has at most 64 characters and no control characters.
    #[test]
    fn check_names_accepts_only_well_formed_names(
        dns in prop::collection::vec(dns_like(), 0..4),
        uris in prop::collection::vec(prop_oneof![any::<String>(), "[a-z]{0,6}:[ -~]{0,20}"], 0..3),
        cn in prop::option::of(prop_oneof![any::<String>(), "[ -~]{0,70}"]),
    ) {
        let Ok(names) = allow_all().check_names(cn.as_deref(), &dns, &[], &uris) else {
            return Ok(());
        };
        for d in &names.dns {
            prop_assert!(well_formed_dns(d), "accepted DNS name {:?}", d);
            prop_assert_eq!(names.dns.iter().filter(|x| *x == d).count(), 1);
        }
        for u in &names.uris {
            let (scheme, rest) = u.split_once(':').expect("a scheme");
            prop_assert!(!rest.is_empty() && u.bytes().all(|b| b.is_ascii_graphic()), "accepted URI {:?}", u);
            prop_assert!(scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic()), "accepted URI {:?}", u);
        }
        match (cn.as_deref().map(str::trim).filter(|c| !c.is_empty()), &names.common_name) {
            (Some(_), Some(c)) => prop_assert!(
                c.chars().count() <= 64 && !c.chars().any(char::is_control),
                "accepted CN {:?}", c
            ),
            // Without a requested CN the first DNS name that fits in 64 characters is used, if any.
            (None, c) => prop_assert_eq!(
                c.as_ref(),
                names.dns.iter().find(|d| d.chars().count() <= 64)
            ),
            (Some(_), None) => prop_assert!(false, "a requested CN was dropped"),
        }
    }

    /// DNS patterns: a name is accepted exactly when a pattern covers it (`*.svc.local` one label,
    /// `**.mesh.local` one or more, `broker.local` exactly), whatever its case.
    #[test]
    fn dns_patterns_accept_exactly_the_covered_names(
        head in prop::collection::vec("[a-z0-9]{1,6}", 0..4),
        suffix in prop::sample::select(vec![
            "svc.local", "mesh.local", "broker.local", "local", "evilsvc.local", "svc.local.evil",
            "xmesh.local", "mesh.local.x", "svc.locals",
        ]),
        wildcard in any::<bool>(),
        upper in prop::collection::vec(any::<bool>(), 64),
    ) {
        let mut labels: Vec<String> = head.clone();
        if wildcard {
            labels.insert(0, "*".to_owned());
        }
        labels.push(suffix.to_owned());
        let lower = labels.join(".");
        let name: String = lower
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
            .collect();
        let before = labels.len() - 1; // labels in front of the suffix
        let covered = match suffix {
            "svc.local" => before == 1,
            "mesh.local" => before >= 1,
            "broker.local" => before == 0,
            _ => false,
        };
        let valid_wildcard = !wildcard || lower.split('.').count() >= 3;
        let profile = Profile {
            name: "mesh".into(),
            allowed_dns: vec!["*.svc.local".into(), "**.mesh.local".into(), "broker.local".into()],
            allowed_common_names: vec!["*".into()],
            ..Profile::allow_all("mesh", Purpose::Server)
        };
        profile.validate().expect("profile");
        let got = profile.check_names(None, std::slice::from_ref(&name), &[], &[]);
        prop_assert_eq!(got.is_ok(), covered && valid_wildcard, "{:?} -> {:?}", name, got);
        if let Ok(names) = got {
            prop_assert_eq!(names.dns, vec![lower]);
        }
    }

    /// URI globs: `*` stays within one path segment, so a URI is accepted exactly when it is the
    /// glob's prefix followed by one segment that is not empty (issue 21 item 7), `.` or `..`.
    #[test]
    fn uri_globs_accept_only_matching_uris(
        tail in "[a-z0-9._~/-]{0,12}",
        prefix in prop::sample::select(vec![
            "spiffe://c.local/ns/prod/", "spiffe://c.local/ns/dev/", "spiffe://c.local/ns/prod",
            "https://c.local/ns/prod/", "spiffe://C.local/ns/prod/",
        ]),
    ) {
        let uri = format!("{prefix}{tail}");
        let profile = Profile {
            allowed_uris: vec!["spiffe://c.local/ns/prod/*".into()],
            allowed_dns: vec![],
            allowed_ips: vec![],
            allowed_common_names: vec!["*".into()],
            ..Profile::allow_all("uris", Purpose::Client)
        };
        let got = profile.check_names(Some("x"), &[], &[], std::slice::from_ref(&uri));
        let one_segment = uri
            .strip_prefix("spiffe://c.local/ns/prod/")
            .is_some_and(|seg| !seg.is_empty() && !seg.contains('/') && seg != "." && seg != "..");
        prop_assert_eq!(got.is_ok(), one_segment, "{:?}", uri);
    }

    /// CIDR patterns: an address is accepted exactly when it is inside one of the blocks.
    #[test]
    fn ip_patterns_accept_exactly_their_blocks(ip in prop_oneof![
        any::<IpAddr>(),
        any::<std::net::Ipv4Addr>().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
    ]) {
        let profile = Profile {
            allowed_ips: vec!["10.0.0.0/8".into(), "fd00::/8".into(), "192.168.1.7".into()],
            allowed_dns: vec![],
            allowed_uris: vec![],
            allowed_common_names: vec!["*".into()],
            ..Profile::allow_all("ips", Purpose::Server)
        };
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        let inside = match ip.to_canonical() {
            IpAddr::V4(a) => a.octets()[0] == 10 || a.octets() == [192, 168, 1, 7],
            IpAddr::V6(a) => a.octets()[0] == 0xfd,
        };
        prop_assert_eq!(profile.check_names(Some("x"), &[], &[ip], &[]).is_ok(), inside);
    }

    /// Arbitrary profile definitions (from config): no panic; an accepted profile's IP patterns are
    /// `*`, an address, or an address with a prefix length within its family.
    #[test]
    fn profile_validate_survives_arbitrary_patterns(
        name in prop_oneof![any::<String>(), "[a-z0-9_-]{0,8}"],
        dns in prop::collection::vec(dns_like(), 0..3),
        ips in prop::collection::vec(prop_oneof![any::<String>(), "[0-9a-f.:]{1,16}(/[0-9]{1,4})?", Just("*".to_owned())], 0..3),
        globs in prop::collection::vec(any::<String>(), 0..3),
        max_ttl in any::<u64>(),
        default_ttl in prop::option::of(any::<u64>()),
    ) {
        let p = Profile {
            name,
            allowed_dns: dns,
            allowed_ips: ips,
            allowed_uris: globs.clone(),
            allowed_common_names: globs,
            max_ttl_secs: max_ttl,
            default_ttl_secs: default_ttl,
            ..Profile::allow_all("x", Purpose::Peer)
        };
        if p.validate().is_ok() {
            for ip in &p.allowed_ips {
                let ok = ip == "*" || match ip.split_once('/') {
                    None => ip.parse::<IpAddr>().is_ok(),
                    Some((a, l)) => match (a.parse::<IpAddr>(), l.parse::<u8>()) {
                        (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
                        (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
                        _ => false,
                    },
                };
                prop_assert!(ok, "accepted IP pattern {:?}", ip);
            }
            let ttl = p.check_ttl(None).expect("a valid profile has a default TTL");
            prop_assert!(ttl >= 1 && ttl <= p.max_ttl_secs);
        }
    }

    /// Names of key types, purposes, revocation reasons and algorithms: no panic, and what is
    /// accepted is the name itself (case and, for revocation reasons, camelCase aside).
    #[test]
    fn names_parse_only_as_themselves(s in prop_oneof![any::<String>(), "[ a-zA-Z0-9-]{0,24}"]) {
        let norm = |x: &str| x.trim().to_ascii_lowercase().replace('-', "");
        if let Ok(k) = s.parse::<KeyType>() {
            prop_assert_eq!(s.trim().to_ascii_lowercase(), k.as_str());
        }
        if let Ok(p) = s.parse::<Purpose>() {
            prop_assert_eq!(s.trim().to_ascii_lowercase(), p.as_str());
        }
        if let Ok(r) = s.parse::<RevocationReason>() {
            prop_assert_eq!(norm(&s), norm(r.as_str()));
        }
        if let Ok(a) = s.parse::<Alg>() {
            prop_assert_eq!(s.as_str(), a.as_str());
        }
        if let Ok(k) = KeyType::parse_signing(&s) {
            prop_assert_eq!(norm(&s), norm(k.as_str()));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// CRL serial numbers (hex from the API or the command line).
// ---------------------------------------------------------------------------------------------------

/// The serials of a DER CRL's entries, as minimal big-endian bytes.
fn crl_serials(der: &[u8]) -> Vec<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (rest, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(der).expect("crl");
    assert!(rest.is_empty());
    crl.iter_revoked_certificates()
        .map(|r| {
            let b = r.raw_serial();
            let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            b[start..].to_vec()
        })
        .collect()
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Hex serials with colons, any case and leading zeros: accepted exactly when 1 to 20 bytes as
    /// a positive INTEGER and not zero, and then the CRL lists that serial.
    #[test]
    fn crl_serials_are_checked(
        bytes in prop::collection::vec(any::<u8>(), 0..24),
        zeros in 0usize..3,
        colons in any::<bool>(),
        upper in any::<bool>(),
        odd in any::<bool>(),
    ) {
        let mut hex_text = "00".repeat(zeros) + &hex::encode(&bytes);
        if odd && hex_text.starts_with('0') {
            hex_text.remove(0);
        }
        if upper {
            hex_text = hex_text.to_ascii_uppercase();
        }
        if colons {
            hex_text = hex_text
                .as_bytes()
                .chunks(2)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join(":");
        }
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let minimal = &bytes[start..];
        let encoded = minimal.len() + usize::from(minimal.first().is_some_and(|b| b & 0x80 != 0));
        let valid = !minimal.is_empty() && encoded <= 20;
        let revoked = [RevokedCert { serial_hex: hex_text.clone(), revoked_at: NOW - 10, reason: None }];
        match fx().issuer.build_crl(&revoked, 1, 3600, NOW) {
            Ok(crl) => {
                prop_assert!(valid, "serial {:?} accepted", hex_text);
                prop_assert_eq!(crl_serials(&crl.der), vec![minimal.to_vec()]);
            }
            Err(_) => prop_assert!(!valid, "serial {:?} refused", hex_text),
        }
    }

    /// Arbitrary serial text and revocation times: no panic; accepted serials are listed.
    #[test]
    fn crl_inputs_survive_arbitrary_text(serial in prop_oneof![any::<String>(), "[0-9a-fA-F: ]{0,50}"], at in any::<i64>()) {
        let revoked = [RevokedCert { serial_hex: serial, revoked_at: at, reason: Some(RevocationReason::KeyCompromise) }];
        if let Ok(crl) = fx().issuer.build_crl(&revoked, 7, 60, NOW) {
            prop_assert_eq!(crl_serials(&crl.der).len(), 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Doctor: certificate files, presented chains, key files.
// ---------------------------------------------------------------------------------------------------

fn chain_file(leaf_der: &[u8]) -> String {
    certs_pem(&[leaf_der, &fx().inter_der])
}

fn key_file() -> String {
    pem_of("PRIVATE KEY", &fx().key_der)
}

fn doctor_chain(cert: &str, key: &str, ca: &str) -> Vec<castellan_core::doctor::Finding> {
    check_chain(&ChainRequest {
        cert: Input::new("chain.pem", cert.as_bytes()),
        key: Some(Input::new("key.pem", key.as_bytes())),
        ca: Some(Input::new("root.pem", ca.as_bytes())),
        host: Some(HOST),
        purpose: Some(Purpose::Server),
        now: NOW,
    })
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Arbitrary files: no panic, and an error finding (there is no certificate in them).
    #[test]
    fn doctor_chain_flags_arbitrary_files(
        cert in prop::collection::vec(any::<u8>(), 0..200),
        other in prop::collection::vec(any::<u8>(), 0..200),
        host in prop::option::of(any::<String>()),
    ) {
        let findings = check_chain(&ChainRequest {
            cert: Input::new("cert.pem", &cert),
            key: Some(Input::new("key.pem", &other)),
            ca: Some(Input::new("ca.pem", &other)),
            host: host.as_deref(),
            purpose: None,
            now: NOW,
        });
        prop_assert!(has_errors(&findings));
        let _ = castellan_core::doctor::holds_private_key(&cert);
    }

    /// Any changed byte of the leaf is flagged with an error.
    #[test]
    fn doctor_chain_flags_a_leaf_with_a_changed_byte(at in any::<Index>(), x in 1u8..=255) {
        let mut leaf = fx().leaf_der.clone();
        let i = at.index(leaf.len());
        leaf[i] ^= x;
        let findings = doctor_chain(&chain_file(&leaf), &key_file(), &fx().ca.root.cert_pem);
        prop_assert!(has_errors(&findings), "byte {} ^ {:#04x}: {:#?}", i, x, findings);
        let presented = check_presented(
            "host:443", &[leaf, fx().inter_der.clone()],
            Some(Input::new("root.pem", fx().ca.root.cert_pem.as_bytes())),
            Some(HOST), Purpose::Server, NOW,
        );
        prop_assert!(has_errors(&presented), "byte {} ^ {:#04x}: {:#?}", i, x, presented);
    }

    /// A truncated leaf, intermediate or key is flagged with an error.
    #[test]
    fn doctor_chain_flags_truncated_blocks(which in 0usize..3, cut in any::<Index>()) {
        let f = fx();
        let (mut leaf, mut inter, mut key) = (f.leaf_der.clone(), f.inter_der.clone(), f.key_der.clone());
        let keep = cut.index([leaf.len(), inter.len(), key.len()][which]);
        match which {
            0 => leaf.truncate(keep),
            1 => inter.truncate(keep),
            _ => key.truncate(keep),
        }
        let findings = doctor_chain(
            &certs_pem(&[&leaf, &inter]),
            &pem_of("PRIVATE KEY", &key),
            &f.ca.root.cert_pem,
        );
        prop_assert!(has_errors(&findings), "{:#?}", findings);
    }

    /// Random edits of the certificate, key and CA files, and of presented DER: no panic (an edit
    /// may leave a file valid, e.g. PEM white space, so findings are not checked).
    #[test]
    fn doctor_chain_survives_edits(which in 0usize..3, ms in mutations(), der_ms in mutations()) {
        let f = fx();
        let mut texts = [chain_file(&f.leaf_der), key_file(), f.ca.root.cert_pem.clone()];
        texts[which] = mutate_text(&ms, &texts[which]);
        let _ = doctor_chain(&texts[0], &texts[1], &texts[2]);
        let mut presented = vec![f.leaf_der.clone(), f.inter_der.clone()];
        presented[which % 2] = apply_all(&der_ms, &presented[which % 2]);
        let _ = check_presented("host:443", &presented, Some(Input::new("ca.pem", texts[2].as_bytes())), Some(HOST), Purpose::Peer, NOW);
    }
}

// ---------------------------------------------------------------------------------------------------
// Doctor: tokens and JWKS documents.
// ---------------------------------------------------------------------------------------------------

fn jwks_doc(jwk: &Value) -> JwksDoc {
    JwksDoc {
        source: "jwks.json".into(),
        body: Ok(jwks_body(jwk)),
    }
}

fn expectations() -> TokenExpectations<'static> {
    TokenExpectations {
        issuer: Some(ISS),
        audience: Some(AUD),
        leeway: 60,
    }
}

/// `payload` signed with the fixture's key, with its usual header.
fn signed(payload: &Value) -> String {
    let key = &fx().signing_key;
    let header = json!({ "alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt" });
    let mut token = B64.encode(serde_json::to_vec(&header).expect("header"));
    token.push('.');
    token.push_str(&B64.encode(serde_json::to_vec(payload).expect("payload")));
    let sig = key.sign(token.as_bytes()).expect("sign");
    token.push('.');
    token.push_str(&B64.encode(sig));
    token
}

const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";

/// A claim value of any JSON shape, with numbers at the extremes.
fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(i64::MAX)),
        Just(Value::from(u64::MAX)),
        Just(json!(-1e300)),
        Just(json!(1e300)),
        any::<String>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([1, "a"])),
        Just(json!({"a": 1})),
        any::<bool>().prop_map(Value::from),
    ]
}

/// A claim value that stays clear of the overflow reported in
/// `finding_check_token_panics_on_a_very_negative_exp` (exp below NOW - i64::MAX).
fn claim_value_without_the_exp_overflow() -> impl Strategy<Value = Value> {
    claim_value().prop_filter("exp overflow finding", |v| {
        let n = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64));
        n.is_none_or(|n| n >= NOW - i64::MAX)
    })
}

/// A replacement for a JWK member: any string, base64url of random bytes, a known JWS algorithm
/// name, or any JSON value.
fn jwk_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::from(B64.encode(b))),
        prop::sample::select(vec!["ES384", "RS256", "EdDSA", "HS256", "PS256", "none"])
            .prop_map(Value::from),
        claim_value(),
    ]
}

fn hostile_payload(exp: Value, nbf: Value, iat: Value, aud: Value, iss: Value) -> Value {
    json!({ "iss": iss, "sub": "s", "aud": aud, "exp": exp, "nbf": nbf, "iat": iat })
}

fn aud_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from(AUD)),
        Just(json!([AUD, "x"])),
        claim_value()
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Arbitrary tokens and JWKS bodies: no panic, and an error finding.
    #[test]
    fn doctor_token_flags_arbitrary_input(
        token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}",
            "(Bearer )?eyJ[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,20}",
        ],
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            any::<String>().prop_map(|s| format!("{{\"keys\":[{s}]}}").into_bytes()),
        ],
    ) {
        let doc = JwksDoc { source: "jwks".into(), body: Ok(body) };
        prop_assert!(has_errors(&check_token(&token, Some(&doc), &expectations(), NOW)));
        prop_assert!(has_errors(&check_token(&token, None, &expectations(), NOW)));
        prop_assert!(has_errors(&check_jwks(&[doc.clone(), jwks_doc(&fx().jwk)], Some(&token), NOW)));
    }

    /// Any single changed character of a valid token, or a proper prefix of it, is flagged.
    #[test]
    fn doctor_token_flags_an_edited_token(at in any::<Index>(), c in prop::sample::select(TOKEN_CHARS), cut in any::<Index>()) {
        let token = &fx().token;
        let mut bytes = token.as_bytes().to_vec();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != c);
        bytes[i] = c;
        let edited = String::from_utf8(bytes).expect("ascii");
        let doc = jwks_doc(&fx().jwk);
        prop_assert!(has_errors(&check_token(&edited, Some(&doc), &expectations(), NOW)), "{:?}", edited);
        prop_assert!(has_errors(&check_jwks(std::slice::from_ref(&doc), Some(&edited), NOW)), "{:?}", edited);
        let short = &token[..cut.index(token.len())];
        prop_assert!(has_errors(&check_token(short, Some(&doc), &expectations(), NOW)), "{:?}", short);
    }

    /// A JWKS whose key was changed (kid, kty, crv, x or y replaced, or alg replaced by another
    /// known algorithm or a non-string) does not verify the token (or is not a key set at all):
    /// flagged. A truncated JWKS is flagged too. (An unknown `alg` string is the finding of
    /// `doctor_flags_a_jwk_with_an_unknown_alg` below.)
    #[test]
    fn doctor_flags_a_changed_jwks(
        (field, value) in prop_oneof![
            (prop::sample::select(vec!["kid", "kty", "crv", "x", "y"]), jwk_value()),
            // `alg` is optional in a JWK (`null` leaves a usable key) and unknown strings are the
            // finding below: here it gets another known algorithm or a value of the wrong type.
            (Just("alg"), prop_oneof![
                prop::sample::select(vec!["ES384", "RS256", "EdDSA", "HS256", "PS256"]).prop_map(Value::from),
                claim_value().prop_filter("not null or a string", |v| !v.is_null() && !v.is_string()),
            ]),
        ],
        cut in any::<Index>(),
    ) {
        let mut jwk = fx().jwk.clone();
        prop_assume!(jwk[field] != value);
        jwk[field] = value;
        let doc = jwks_doc(&jwk);
        prop_assert!(has_errors(&check_token(&fx().token, Some(&doc), &expectations(), NOW)), "{}", jwk);
        prop_assert!(has_errors(&check_jwks(std::slice::from_ref(&doc), Some(&fx().token), NOW)), "{}", jwk);
        let body = jwks_body(&fx().jwk);
        let short = JwksDoc { source: "jwks".into(), body: Ok(body[..cut.index(body.len())].to_vec()) };
        prop_assert!(has_errors(&check_token(&fx().token, Some(&short), &expectations(), NOW)));
    }

    /// Random edits of the JWKS text: no panic (an edit of white space or of `use` may leave it
    /// usable, so findings are not checked).
    #[test]
    fn doctor_jwks_survives_edits(ms in mutations()) {
        let body = apply_all(&ms, &jwks_body(&fx().jwk));
        let doc = JwksDoc { source: "jwks".into(), body: Ok(body) };
        let _ = check_token(&fx().token, Some(&doc), &expectations(), NOW);
        let _ = check_jwks(&[doc, jwks_doc(&fx().jwk)], Some(&fx().token), NOW);
    }

    /// Signed tokens with claims of any JSON shape (numbers at the extremes, strings, arrays,
    /// null): no panic, and a token whose claims are wrong gets an error finding. Values that
    /// trigger the exp overflow finding are left to the ignored property below.
    #[test]
    fn doctor_token_survives_odd_claims(
        exp in claim_value_without_the_exp_overflow(),
        nbf in claim_value(),
        iat in claim_value(),
        aud in aud_value(),
        iss in prop_oneof![Just(Value::from(ISS)), claim_value()],
    ) {
        let token = signed(&hostile_payload(exp.clone(), nbf, iat, aud.clone(), iss.clone()));
        let doc = jwks_doc(&fx().jwk);
        let findings = check_token(&token, Some(&doc), &expectations(), NOW);
        let _ = check_jwks(std::slice::from_ref(&doc), Some(&token), NOW);
        // Expired beyond the leeway, another audience or another issuer: an error. (A missing or
        // non-numeric exp is only a warning.)
        let expired = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64)).is_some_and(|e| e < NOW - 60);
        let aud_ok = aud == AUD || aud.as_array().is_some_and(|a| a.contains(&Value::from(AUD)));
        if expired || !aud_ok || iss != ISS {
            prop_assert!(has_errors(&findings), "{:#?}", findings);
        }
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Signed tokens with any numeric `exp`: no panic.
    #[test]
    fn doctor_token_survives_any_exp(exp in claim_value(), nbf in claim_value(), iat in claim_value()) {
        let token = signed(&hostile_payload(exp, nbf, iat, Value::from(AUD), Value::from(ISS)));
        let doc = jwks_doc(&fx().jwk);
        let _ = check_token(&token, Some(&doc), &expectations(), NOW);
        let _ = check_jwks(std::slice::from_ref(&doc), Some(&token), NOW);
        let _ = check_token(&token, None, &TokenExpectations::default(), NOW);
    }
}

proptest! {
    #![proptest_config(cfg(64))]

    /// A JWK that declares an `alg` which is not a JWS algorithm (any unknown string, or an
    /// encryption algorithm such as `RSA-OAEP`) must not be reported as verifying the token.
    #[test]
    fn doctor_flags_a_jwk_with_an_unknown_alg(
        alg in prop_oneof![any::<String>(), Just("RSA-OAEP".to_owned()), Just("none".to_owned()), Just(String::new())]
            .prop_filter("not a JWS algorithm", |a| a.parse::<jsonwebtoken::Algorithm>().is_err()),
    ) {
        let mut jwk = fx().jwk.clone();
        jwk["alg"] = Value::from(alg);
        let doc = jwks_doc(&jwk);
        prop_assert!(has_errors(&check_token(&fx().token, Some(&doc), &expectations(), NOW)), "{}", jwk);
    }
}

proptest! {
    #![proptest_config(cfg(64))]

    /// The common name a request gets when it asks for none (its first DNS name) is at most 64
    /// characters, the limit an explicitly requested common name is held to (X.520 ub-common-name).
    #[test]
    fn a_derived_common_name_is_at_most_64_characters(labels in prop::collection::vec("[a-z]{1,60}", 2..5)) {
        let name = labels.join(".");
        if let Ok(names) = allow_all().check_names(None, std::slice::from_ref(&name), &[], &[]) {
            match names.common_name {
                Some(cn) => prop_assert!(cn == name && cn.chars().count() <= 64, "CN {:?} from {:?}", cn, name),
                None => prop_assert!(name.chars().count() > 64, "no CN derived from {:?}", name),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Secret names (the secrets store).
// ---------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(512))]

    /// A name is accepted exactly when it is `/`-separated segments of `[A-Za-z0-9._-]`, none empty,
    /// `.` or `..`, at most 256 bytes; a refusal never quotes a control character raw.
    #[test]
    fn secret_names_follow_the_rule_exactly(
        name in prop_oneof![any::<String>(), "[a-zA-Z0-9._/-]{0,20}", "[a-z]{1,8}(/[a-z.]{1,8}){0,4}/?", "[a-z]{250,260}"],
    ) {
        use castellan_core::secret_store::validate_name;
        let segment_ok = |s: &str| {
            !s.is_empty() && s != "." && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let expected = name.len() <= 256 && name.split('/').all(segment_ok);
        match validate_name(&name) {
            Ok(()) => prop_assert!(expected, "accepted {:?}", name),
            Err(e) => {
                prop_assert!(!expected, "refused {:?}", name);
                prop_assert!(!e.to_string().chars().any(char::is_control), "{:?}", e.to_string());
            }
        }
    }
}

/// Tests named after the bug they pin.
#[path = "regression.rs"]
mod regression;
