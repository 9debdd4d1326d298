//! Robustness of the agent's configuration parser (`AgentConfig::from_toml`): arbitrary text and
//! structure-aware edits of a valid `agent.toml` must never panic, and values that are certainly
//! malformed (a mode that is not octal or too large, an owner id out of range, a duration that is
//! not one) must be refused with an error.
//!
//! Also covers `castellan_core::duration::parse_duration` (the TTL parser behind `--ttl 720h`), a
//! dependency of the agent with the same duration syntax as `ttl` here.
//!
//! Case counts are modest so that the suite stays fast in debug builds; set `PROPTEST_CASES` to run
//! every property with more cases.

use std::net::IpAddr;
use std::time::Duration;

use castellan_agent::AgentConfig;
use castellan_core::pki::KeyType;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;

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

/// A TOML string literal holding `s` exactly.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A valid configuration with some values replaced (each given as TOML source).
struct Fields {
    ca_check: String,
    ttl: String,
    mode: String,
    ip: String,
    gid: String,
    key_type: String,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            ca_check: quoted("5m"),
            ttl: quoted("24h"),
            mode: quoted("0640"),
            ip: quoted("127.0.0.1"),
            gid: "1883".to_owned(),
            key_type: quoted("p-256"),
        }
    }
}

fn config(f: &Fields) -> String {
    format!(
        r#"server = "http://127.0.0.1:8270"
credential_file = "agent.json"
ca_check_interval = {ca_check}

[[certificate]]
name = "broker"
profile = "server"
dns = ["localhost"]
ip = [{ip}]
ttl = {ttl}
key_type = {key_type}
dir = "certs/broker"
reload = "true"
gid = {gid}
[certificate.files.key]
name = "server.key"
mode = {mode}
"#,
        ca_check = f.ca_check,
        ttl = f.ttl,
        mode = f.mode,
        ip = f.ip,
        gid = f.gid,
        key_type = f.key_type,
    )
}

fn parse(text: &str) -> Result<AgentConfig, castellan_agent::AgentError> {
    AgentConfig::from_toml("agent.toml", text)
}

fn key_mode(c: &AgentConfig) -> u32 {
    c.certificates[0]
        .resolved_files()
        .into_iter()
        .find(|f| f.role == "key")
        .expect("key file")
        .mode
}

#[test]
fn the_base_configuration_is_valid() {
    let c = parse(&config(&Fields::default())).expect("valid");
    assert_eq!(c.ca_check_interval, Duration::from_secs(300));
    assert_eq!(c.certificates[0].ttl, Some(Duration::from_secs(86_400)));
    assert_eq!(key_mode(&c), 0o640);
}

// ---------------------------------------------------------------------------------------------------
// Whole documents.
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Set(Index, u8),
    Insert(Index, String),
    Delete(Index, Index),
    Duplicate(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (
            any::<Index>(),
            prop_oneof![
                any::<String>(),
                "[\\[\\]\"'=#\n ]{1,4}",
                Just("[[certificate]]\n".to_owned())
            ]
        )
            .prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
    ]
}

fn apply(ms: &[Mutation], text: &str) -> String {
    let mut v = text.as_bytes().to_vec();
    for m in ms {
        let len = v.len();
        let range = |a: &Index, b: &Index| {
            let (x, y) = (a.index(len + 1), b.index(len + 1));
            x.min(y)..x.max(y)
        };
        match m {
            Mutation::Truncate(i) => v.truncate(i.index(len.max(1))),
            Mutation::Set(i, b) if len > 0 => v[i.index(len)] = *b,
            Mutation::Set(..) => {}
            Mutation::Insert(i, s) => {
                let at = i.index(len + 1);
                v.splice(at..at, s.bytes());
            }
            Mutation::Delete(a, b) => {
                v.drain(range(a, b));
            }
            Mutation::Duplicate(a, b) => {
                let r = range(a, b);
                let copy = v[r.clone()].to_vec();
                v.splice(r.end..r.end, copy);
            }
        }
    }
    String::from_utf8_lossy(&v).into_owned()
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Arbitrary text is never a configuration (it lacks the required settings).
    #[test]
    fn arbitrary_text_is_refused(
        text in prop_oneof![
            any::<String>(),
            "([a-z_]{1,12} = (\"[ -~]{0,10}\"|[0-9]{1,5}|true)\n){0,6}",
            "(\\[\\[?[a-z._]{1,12}\\]\\]?\n([a-z_]{1,8} = \"[a-z0-9]{0,6}\"\n){0,3}){0,3}",
        ],
    ) {
        prop_assert!(parse(&text).is_err());
    }

    /// Random edits of a valid configuration: no panic. An edit may leave it valid (a changed name
    /// or path, white space), so only consistency is checked: whatever is accepted validates, and
    /// its file modes are file modes.
    #[test]
    fn edited_configurations_never_panic(ms in prop::collection::vec(mutation(), 1..4)) {
        if let Ok(c) = parse(&apply(&ms, &config(&Fields::default()))) {
            prop_assert!(c.validate().is_ok());
            for cert in &c.certificates {
                prop_assert!(cert.resolved_files().iter().all(|f| f.mode <= 0o7777));
            }
        }
    }

    /// Any proper prefix that cuts into the last value is refused (an unterminated string).
    #[test]
    fn a_config_cut_inside_a_string_is_refused(cut in any::<Index>()) {
        let text = config(&Fields::default());
        // The last value is `mode = "0640"`: cut between its opening quote and its closing quote.
        let open = text.rfind("\"0640\"").expect("mode");
        let at = open + 1 + cut.index(5);
        prop_assert!(parse(&text[..at]).is_err(), "{:?}", &text[..at]);
    }
}

// ---------------------------------------------------------------------------------------------------
// Field values.
// ---------------------------------------------------------------------------------------------------

/// Mode texts that hit the finding of `a_mode_with_a_sign_or_a_repeated_prefix_is_refused`.
fn sign_or_repeated_prefix(s: &str) -> bool {
    let rest = s.strip_prefix("0o").unwrap_or(s);
    rest.starts_with('+') || rest.starts_with("0o")
}

fn mode_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-7]{1,6}",
        "0o[0-7]{1,5}",
        "0{5,30}[0-7]{1,4}",
        "[0-9a-f]{1,5}",
        "[-+ ]{0,2}[0-7]{1,4}[ ]?",
        "[ -~]{0,8}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    /// A mode is accepted exactly when it is octal digits (optionally after one `0o`) of at most
    /// 0o7777, and then it is that number. (A leading `+` or a repeated `0o` is the finding below.)
    #[test]
    fn modes_are_octal_file_modes(mode in mode_text().prop_filter("finding", |m| !sign_or_repeated_prefix(m))) {
        let rest = mode.strip_prefix("0o").unwrap_or(&mode);
        let expected = (!rest.is_empty() && rest.bytes().all(|b| (b'0'..=b'7').contains(&b)))
            .then(|| u128::from_str_radix(rest, 8).ok())
            .flatten()
            .filter(|m| *m <= 0o7777);
        let got = parse(&config(&Fields { mode: quoted(&mode), ..Fields::default() }));
        match (got, expected) {
            (Ok(c), Some(m)) => prop_assert_eq!(u128::from(key_mode(&c)), m),
            (Err(_), None) => {}
            (got, expected) => prop_assert!(false, "mode {:?}: {:?}, expected {:?}", mode, got.map(|c| key_mode(&c)), expected),
        }
    }

    /// Owner ids outside 0..=u32::MAX, and values of the wrong type, are refused.
    #[test]
    fn owner_ids_are_u32(gid in prop_oneof![any::<i64>(), 0i64..=i64::from(u32::MAX), Just(-1i64), Just(i64::from(u32::MAX) + 1)], float in any::<bool>()) {
        let source = if float { format!("{gid}.5") } else { gid.to_string() };
        let got = parse(&config(&Fields { gid: source, ..Fields::default() }));
        let valid = !float && u32::try_from(gid).is_ok();
        prop_assert_eq!(got.is_ok(), valid, "gid {} float {}", gid, float);
        if let Ok(c) = got {
            prop_assert_eq!(c.certificates[0].gid.map(i64::from), Some(gid));
        }
    }

    /// IP SANs: accepted exactly when they are IP addresses.
    #[test]
    fn ip_sans_are_ip_addresses(ip in prop_oneof![any::<String>(), "[0-9a-f.:]{1,20}", any::<IpAddr>().prop_map(|a| a.to_string())]) {
        let got = parse(&config(&Fields { ip: quoted(&ip), ..Fields::default() }));
        prop_assert_eq!(got.as_ref().ok().map(|c| c.certificates[0].ip.clone()), ip.parse::<IpAddr>().ok().map(|a| vec![a]));
    }

    /// Key types: accepted exactly when the name is one.
    #[test]
    fn key_types_are_names(kt in prop_oneof![any::<String>(), "[a-zA-Z0-9 -]{0,10}", Just("P-384".to_owned())]) {
        let got = parse(&config(&Fields { key_type: quoted(&kt), ..Fields::default() }));
        prop_assert_eq!(got.as_ref().ok().and_then(|c| c.certificates[0].key_type), kt.parse::<KeyType>().ok());
    }
}

// ---------------------------------------------------------------------------------------------------
// Durations (`ttl`, `ca_check_interval`, and the server's `parse_duration`).
// ---------------------------------------------------------------------------------------------------

fn unit() -> impl Strategy<Value = (&'static str, u64)> {
    prop::sample::select(vec![
        ("s", 1),
        ("sec", 1),
        ("m", 60),
        ("min", 60),
        ("h", 3600),
        ("hours", 3600),
        ("d", 86_400),
        ("days", 86_400),
    ])
}

proptest! {
    #![proptest_config(cfg(256))]

    /// `<n><unit>` (with surrounding spaces) is `n` units, in the config and in the server's parser.
    #[test]
    fn durations_are_read_exactly(n in 1u64..1_000_000, (unit, secs) in unit(), ws in " {0,2}") {
        let text = format!("{ws}{n}{unit}{ws}");
        let expected = Duration::from_secs(n * secs);
        let fields = Fields { ttl: quoted(&text), ca_check: quoted(&text), ..Fields::default() };
        if expected > castellan_core::duration::MAX_DURATION {
            prop_assert!(parse(&config(&fields)).is_err(), "over 100 years: {}", text);
            prop_assert!(castellan_core::duration::parse_duration(&text).is_err());
            return Ok(());
        }
        let c = parse(&config(&fields)).expect("a duration is accepted");
        prop_assert_eq!(c.certificates[0].ttl, Some(expected));
        prop_assert_eq!(c.ca_check_interval, expected);
        prop_assert_eq!(castellan_core::duration::parse_duration(&text), Ok(expected));
    }

    /// Arbitrary duration texts: no panic; text without a digit is never a duration.
    #[test]
    fn durations_survive_arbitrary_text(text in prop_oneof![any::<String>(), "[0-9a-z .]{0,16}", "[0-9]{15,30}[smhdy]"]) {
        let got = parse(&config(&Fields { ttl: quoted(&text), ..Fields::default() }));
        let server = castellan_core::duration::parse_duration(&text);
        if !text.bytes().any(|b| b.is_ascii_digit()) {
            prop_assert!(got.is_err());
            prop_assert!(server.is_err());
        }
        if let Ok(c) = got {
            prop_assert_eq!(c.certificates[0].ttl, server.ok());
        }
    }

    /// A duration of the wrong TOML type is refused.
    #[test]
    fn durations_of_the_wrong_type_are_refused(v in prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("true".to_owned()),
        Just("[\"5m\"]".to_owned()),
        Just("{ s = 5 }".to_owned()),
    ]) {
        let ttl = parse(&config(&Fields { ttl: v.clone(), ..Fields::default() }));
        let ca = parse(&config(&Fields { ca_check: v.clone(), ..Fields::default() }));
        prop_assert!(ttl.is_err() && ca.is_err(), "{}", v);
    }
}

// ---------------------------------------------------------------------------------------------------
// Findings.
// ---------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(64))]

    /// A mode with a sign or a repeated `0o` prefix is not "an octal file mode like \"0640\"".
    #[test]
    fn a_mode_with_a_sign_or_a_repeated_prefix_is_refused(
        prefix in prop::sample::select(vec!["+", "0o+", "0o0o", "0o0o0o", "0o0o+"]),
        digits in "[0-7]{1,4}",
    ) {
        let mode = format!("{prefix}{digits}");
        let got = parse(&config(&Fields { mode: quoted(&mode), ..Fields::default() }));
        prop_assert!(got.is_err(), "{:?}", mode);
    }

    /// A zero (or sub-second, which the agent rounds down to zero seconds) `ttl` or
    /// `ca_check_interval` is refused when the configuration is read.
    #[test]
    fn zero_durations_are_refused(text in prop::sample::select(vec!["0s", "0m", "0h", "500ms", "999ms", "1ns"]), field in any::<bool>()) {
        let fields = if field {
            Fields { ttl: quoted(text), ..Fields::default() }
        } else {
            Fields { ca_check: quoted(text), ..Fields::default() }
        };
        prop_assert!(parse(&config(&fields)).is_err(), "{} = {:?}", if field { "ttl" } else { "ca_check_interval" }, text);
    }
}

/// Tests named after the bug they pin.
#[path = "regression.rs"]
mod regression;
