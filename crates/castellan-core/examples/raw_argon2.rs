//! The limit of password sign-in: argon2id verifications per second on one thread, with the
//! parameters sign-in uses by default (`HashParams::default()`, OWASP: m = 19456 KiB, t = 2, p = 1),
//! through the same function the server calls. `bench/run` runs it beside the sign-in load.
//!
//! usage: raw_argon2 [argon2id] SECONDS; prints one JSON line (`signatures_per_sec`: verifications/s,
//! the key `bench/run`'s raw rows read).

use std::time::{Duration, Instant};

use castellan_core::signin::password::{HashParams, hash_password, verify_password};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3.0);
    let params = HashParams::default();
    let phc = hash_password("correct horse battery", &params).expect("hash");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        assert!(verify_password(
            std::hint::black_box("correct horse battery"),
            &phc
        ));
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "{{\"alg\":\"argon2id m={} t={} p={}\",\"signatures_per_sec\":{rate:.1}}}",
        params.memory_kib, params.iterations, params.parallelism
    );
}
