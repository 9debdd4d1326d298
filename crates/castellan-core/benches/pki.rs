//! Criterion: P-256 leaves per second in-process, with the mandatory webpki verification included,
//! and the floor under it: the three P-256 operations any issuer that generates the key and checks
//! what it signed must do (generate a key, sign, verify), with nothing else around them, and the same
//! floor without the verification.
//! `cargo bench -p castellan-core --bench pki`

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use castellan_core::pki::{CaOptions, IssueRequest, Issuer, KeyType, Profile, create_ca};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let now = 1_795_000_000;
    let ca = create_ca(&CaOptions::root(), &CaOptions::intermediate(), now).expect("ca");
    let issuer = Issuer::from_ca(&ca.root, &ca.intermediate).expect("issuer");
    let profile = Profile::builtin("server").expect("profile");
    let req = IssueRequest {
        common_name: Some("bench.internal".into()),
        dns_names: vec!["bench.internal".into()],
        ttl_secs: Some(86_400),
        key_type: Some(KeyType::P256),
        ..IssueRequest::default()
    };
    let mut g = c.benchmark_group("pki");
    g.bench_function("issue_p256_server_generated_key", |b| {
        b.iter(|| {
            issuer
                .issue(&profile, std::hint::black_box(&req), now)
                .expect("issue")
        })
    });
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ca_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("ca key");
    let ca_public = UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        ca_key.public_key().as_ref().to_vec(),
    );
    g.bench_function("p256_floor_keygen_sign_verify", |b| {
        b.iter(|| {
            let leaf = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
            // A to-be-signed certificate is ≈ 400 bytes and holds the new public key.
            let mut tbs = [0u8; 400];
            tbs[..65].copy_from_slice(leaf.public_key().as_ref());
            let sig = ca_key.sign(&rng, &tbs).expect("sign");
            ca_public.verify(&tbs, sig.as_ref()).expect("verify");
        })
    });
    // The same without the verification: what an issuer that does not check what it signs (cfssl)
    // needs at least, so the two floors give the verification's share.
    g.bench_function("p256_floor_keygen_sign", |b| {
        b.iter(|| {
            let leaf = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
            let mut tbs = [0u8; 400];
            tbs[..65].copy_from_slice(leaf.public_key().as_ref());
            ca_key.sign(&rng, &tbs).expect("sign")
        })
    });
    // One verification alone, as webpki makes it (the key parsed from its bytes each time; parsing is
    // ≈ 1 µs of it, so keeping the CA's key parsed would not pay).
    let sig = ca_key.sign(&rng, &[7u8; 400]).expect("sign");
    g.bench_function("p256_verify", |b| {
        b.iter(|| ca_public.verify(&[7u8; 400], sig.as_ref()).expect("verify"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
