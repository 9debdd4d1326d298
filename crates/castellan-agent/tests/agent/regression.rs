//! Tests named after the bug they pin: each was found by a property in `robustness.rs`, fixed, and
//! kept here so the bug cannot come back unnoticed.

use super::*;

/// Regression (found by the properties above, fixed): `mode = "+644"` and `mode = "0o0o0o644"` are accepted as 0o644 (`config.rs`
/// `opt_mode`: `u32::from_str_radix` accepts a leading `+`, and `trim_start_matches("0o")` strips
/// the prefix any number of times).
#[test]
fn finding_signed_or_multi_prefixed_modes_are_accepted() {
    let accepted: Vec<(&str, String)> = ["+644", "0o0o0o644", "0o+644"]
        .into_iter()
        .filter_map(|mode| {
            let got = parse(&config(&Fields {
                mode: quoted(mode),
                ..Fields::default()
            }));
            got.ok().map(|c| (mode, format!("{:o}", key_mode(&c))))
        })
        .collect();
    assert!(accepted.is_empty(), "accepted (mode, value): {accepted:?}");
}

/// Regression (found by the properties above, fixed): `ttl = "0s"` (or `"500ms"`, which becomes `ttl_secs: 0`) and
/// `ca_check_interval = "0s"` pass `AgentConfig::from_toml`/`validate`. The server then refuses
/// every issuance (`TtlZero`), and the zero interval makes `next_wake` fall to its 200 ms floor.
#[test]
fn finding_zero_durations_are_accepted() {
    let ttl = parse(&config(&Fields {
        ttl: quoted("500ms"),
        ..Fields::default()
    }));
    let ca = parse(&config(&Fields {
        ca_check: quoted("0s"),
        ..Fields::default()
    }));
    assert!(
        ttl.is_err() && ca.is_err(),
        "ttl 500ms -> {:?}, ca_check_interval 0s -> {:?}",
        ttl.map(|c| c.certificates[0].ttl),
        ca.map(|c| c.ca_check_interval)
    );
}
