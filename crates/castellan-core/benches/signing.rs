//! Criterion: raw signature vs a whole access token (claims → JSON → base64 → signature), per algorithm.
//! `cargo bench -p castellan-core --bench signing`

use castellan_core::token::{AccessClaims, sign_access_token};
use castellan_core::token::{Alg, SigningKey};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let claims = AccessClaims {
        iss: "http://127.0.0.1:8270".into(),
        sub: "cl_7637e5a11aa3253152315af4".into(),
        aud: "http://127.0.0.1:8270".into(),
        exp: 1_795_239_226,
        iat: 1_795_238_326,
        nbf: 1_795_238_326,
        jti: "0c5d0f68da6f192b87d408e8c3db5727".into(),
        client_id: "cl_7637e5a11aa3253152315af4".into(),
        scope: "invoices:read".into(),
    };
    for alg in Alg::ALL {
        let (key, _) = SigningKey::generate(alg, None).expect("key");
        let msg = vec![b'a'; 420];
        let mut g = c.benchmark_group(alg.as_str());
        g.bench_function("raw_signature", |b| {
            b.iter(|| key.sign(std::hint::black_box(&msg)).expect("sign"))
        });
        g.bench_function("access_token", |b| {
            b.iter(|| sign_access_token(&key, std::hint::black_box(&claims)).expect("sign"))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
