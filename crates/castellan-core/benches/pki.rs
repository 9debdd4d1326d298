//! Criterion: P-256 leaves per second in-process, with the mandatory webpki verification included.
//! `cargo bench -p castellan-core --bench pki`

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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
