use super::glob_match;

#[test]
fn globs_match_whole_subjects() {
    for (p, t, want) in [
        (
            "system:serviceaccount:payments:*",
            "system:serviceaccount:payments:invoicer",
            true,
        ),
        (
            "system:serviceaccount:payments:*",
            "system:serviceaccount:payments:",
            true,
        ),
        (
            "system:serviceaccount:payments:*",
            "system:serviceaccount:paymentsx:a",
            false,
        ),
        (
            "system:serviceaccount:payments:*",
            "system:serviceaccount:other:invoicer",
            false,
        ),
        (
            "system:serviceaccount:*:agent",
            "system:serviceaccount:a:agent",
            true,
        ),
        (
            "system:serviceaccount:*:agent",
            "system:serviceaccount:a:agent2",
            false,
        ),
        ("exact", "exact", true),
        ("exact", "exactly", false),
        ("*", "", true),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbY", false),
    ] {
        assert_eq!(glob_match(p, t), want, "{p} vs {t}");
    }
}
