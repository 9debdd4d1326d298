//! The limit a token endpoint can reach: raw signatures per second of one key on one thread, measured
//! with aws-lc-rs directly (no JSON, no base64). `bench/tokens.sh` runs it beside the HTTP load.
//!
//! usage: raw_sign ALG SECONDS   (ALG: RS256 | ES256 | EdDSA); prints one JSON line.

use std::time::{Duration, Instant};

use castellan_core::token::{Alg, SigningKey};

fn main() {
    let mut args = std::env::args().skip(1);
    let alg: Alg = args
        .next()
        .unwrap_or_else(|| "RS256".into())
        .parse()
        .expect("ALG: RS256, ES256 or EdDSA");
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let (key, _) = SigningKey::generate(alg, None).expect("key");
    // A signing input of a realistic size (an access token's header and claims).
    let message = vec![b'a'; 420];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for _ in 0..50 {
            std::hint::black_box(key.sign(std::hint::black_box(&message)).expect("sign"));
        }
        n += 50;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("{{\"alg\":\"{alg}\",\"signatures_per_sec\":{rate:.0}}}");
}
