"""Markdown tables for BENCHMARKS.md from a bench/run result file.

usage: report.py bench/results/<date>.json
Every figure: median of the runs (min..max). Ratios use medians.
"""

import json
import statistics
import sys

PEERS = [("oidc-provider", "node oidc-provider"), ("fastapi-pyjwt", "FastAPI + PyJWT"), ("cfssl-serve", "cfssl serve")]
ALG_NAMES = {"RS256": "RS256 (RSA-2048)", "ES256": "ES256 (P-256)", "EdDSA": "EdDSA (Ed25519)"}


def med(xs):
    return statistics.median(xs)


MAX_OTHER = 5.0


def contended(r):
    return any(x.get("cpu0_other_pct", 0) > MAX_OTHER for x in r["runs"])


def rate(r):
    xs = [x["rps"] for x in r["runs"]]
    m = med(xs)
    mark = " †" if contended(r) else ""
    if len(xs) == 1:
        return f"{m:,.0f}{mark}"
    return f"{m:,.0f} ({min(xs):,.0f}..{max(xs):,.0f}){mark}"


def ms(x):
    if x < 1:
        return f"{x:.2f}"
    if x < 100:
        return f"{x:.1f}"
    return f"{x:,.0f}"


def latency(r):
    return f"{ms(med([x['p50_ms'] for x in r['runs']]))} / {ms(med([x['p99_ms'] for x in r['runs']]))} ms"


def raw_secs(r):
    return r["load"].split(" on CPU")[0].split(" ")[-1]


def mib(r):
    return r["peak_rss_kib"] / 1024


def main() -> None:
    global MAX_OTHER
    doc = json.load(open(sys.argv[1]))
    res = doc["results"]
    s = doc["settings"]
    MAX_OTHER = s.get("max_other_pct", MAX_OTHER)
    runs = f"{s['warmup_secs']} s warm-up + {s['runs']} × {s['duration_secs']} s"

    def get(kind, server, alg):
        for r in res:
            if r["kind"] == kind and r["server"] == server and r["alg"] == alg:
                return r
        return None

    def rps(r):
        return med([x["rps"] for x in r["runs"]])

    def conns(r):
        return r["load"].split(" on CPU")[0]

    rows = []
    header = ["what", "load (each server on CPU 0, wrk on CPU 1)", "Castellan"] + [p[1] for p in PEERS] + [
        "Castellan ÷ best peer", "Castellan ÷ raw limit"]

    def row(what, load, c, peers, best, raw):
        rows.append([what, load, c] + [peers.get(k, "—") for k, _ in PEERS] + [best, raw])

    def compare(kind, alg, what, with_raw):
        c = get(kind, "castellan", alg)
        if c is None:
            return
        peers = {k: get(kind, k, alg) for k, _ in PEERS}
        peers = {k: v for k, v in peers.items() if v is not None}
        best = max(peers.items(), key=lambda kv: rps(kv[1])) if peers else None
        best_txt = f"**{rps(c) / rps(best[1]):.2f}** (vs {dict(PEERS)[best[0]]})" if best else "—"
        raw_txt = "—"
        raw = get("raw", "castellan", alg)
        if with_raw and raw:
            raw_txt = f"**{rps(c) / rps(raw):.2f}**"
        load = f"`{conns(c)}`, {runs}"
        row(what, load, rate(c), {k: rate(v) for k, v in peers.items()}, best_txt, raw_txt)
        row("↳ p50 / p99 latency", load, latency(c), {k: latency(v) for k, v in peers.items()}, "", "")

    for alg in ["RS256", "ES256", "EdDSA"]:
        compare("tokens", alg, f"`client_credentials` tokens/s, {ALG_NAMES[alg]}", True)
    compare("tokens-assertion", "RS256",
            "`client_credentials` tokens/s, RS256, client assertion (service-account token, RS256)", False)
    for alg in ["RS256", "ES256"]:
        compare("refresh", alg, f"`refresh_token` grant/s (access + ID + rotated refresh token), {ALG_NAMES[alg]}",
                False)
    compare("signin", "argon2id", "password sign-ins/s (`POST /signin`: argon2id, session, code)", True)
    compare("jwks", "RS256", "JWKS requests/s (one RSA key)", False)
    compare("certs", "P-256", "P-256 leaves/s, server-generated key, over HTTP", False)

    def rss_row(kind, what, algs):
        cells = {}
        for server in ["castellan"] + [k for k, _ in PEERS]:
            rs = [(a, get(kind, server, a)) for a in algs]
            rs = [(a, r) for a, r in rs if r is not None]
            if rs:
                cells[server] = " / ".join(f"{mib(r):.1f}" for _, r in rs) + " MiB"
        if "castellan" not in cells:
            return
        c_max = max(mib(r) for a in algs if (r := get(kind, "castellan", a)))
        peer_min = [mib(r) for k, _ in PEERS for a in algs if (r := get(kind, k, a))]
        ratio = f"{c_max / min(peer_min):.2f} (lower is better)" if peer_min else "—"
        row(what, "`VmHWM` after the load above", cells.pop("castellan"), cells, ratio, "—")

    rss_row("tokens", "peak RSS, token load (RS256 / ES256 / EdDSA)", ["RS256", "ES256", "EdDSA"])
    rss_row("jwks", "peak RSS, JWKS load", ["RS256"])
    rss_row("certs", "peak RSS, certificate load", ["P-256"])
    rss_row("signin-burst", "peak RSS, 200 concurrent sign-ins", ["argon2id"])

    for alg in ["RS256", "ES256", "EdDSA"]:
        raw = get("raw", "castellan", alg)
        if raw:
            peers = {k: rate(r) for k, _ in PEERS if (r := get("raw", k, alg))}
            row(f"raw signatures/s, {ALG_NAMES[alg]}, one core: the limit (peers: their own library)",
                f"`raw_sign {alg} {raw_secs(raw)}` on CPU 0, {len(raw['runs'])} runs", rate(raw), peers, "—", "1.00")

    raw = get("raw", "castellan", "argon2id")
    if raw:
        row("raw argon2id verifications/s, one core: the limit of sign-in",
            f"`raw_argon2 {raw_secs(raw)}` on CPU 0, {len(raw['runs'])} runs", rate(raw), {}, "—", "1.00")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]

    # Targets of issue 7.
    t = []

    def target(text, value, ok, fmt):
        t.append(f"| {text} | {fmt(value)} | {'met' if ok else '**missed**'} |")

    c_rs = get("tokens", "castellan", "RS256")
    o_rs = get("tokens", "oidc-provider", "RS256")
    raw_rs = get("raw", "castellan", "RS256")
    c_es = get("tokens", "castellan", "ES256")
    if c_rs and o_rs:
        v = rps(c_rs) / rps(o_rs)
        target("RS256 tokens/s ≥ 2.5× node oidc-provider (RS256)", v, v >= 2.5, lambda x: f"{x:.2f}×")
    if c_rs and raw_rs:
        v = rps(c_rs) / rps(raw_rs)
        target("RS256 tokens/s ≥ 85% of raw RSA-2048 signing on the server's core", v, v >= 0.85,
               lambda x: f"{x:.0%}")
    if c_es and o_rs:
        v = rps(c_es) / rps(o_rs)
        target("ES256 tokens/s ≥ 8× node oidc-provider RS256", v, v >= 8, lambda x: f"{x:.1f}×")
    ca_rs = get("tokens-assertion", "castellan", "RS256")
    if ca_rs and c_rs:
        v = rps(ca_rs) / rps(c_rs)
        target("client-assertion tokens/s ≥ 0.8 of client_secret_basic, RS256, same server (issue 19)", v,
               v >= 0.8, lambda x: f"{x:.2f}")
    cj, oj = get("jwks", "castellan", "RS256"), get("jwks", "oidc-provider", "RS256")
    if cj and oj:
        v = rps(cj) / rps(oj)
        target("JWKS requests/s ≥ 5× node oidc-provider", v, v >= 5, lambda x: f"{x:.1f}×")
    cc, fc = get("certs", "castellan", "P-256"), get("certs", "cfssl-serve", "P-256")
    if cc and fc:
        v = rps(cc) / rps(fc)
        target("P-256 leaves/s over HTTP ≥ 4× cfssl serve", v, v >= 4, lambda x: f"{x:.2f}×")
    ct = [get("tokens", "castellan", a) for a in ["RS256", "ES256", "EdDSA"]]
    ct = [r for r in ct if r]
    if ct:
        v = max(mib(r) for r in ct)
        target("peak RSS under token load ≤ 60 MiB", v, v <= 60, lambda x: f"{x:.1f} MiB (largest of the three)")
    for alg in ["RS256", "ES256"]:
        c, o = get("refresh", "castellan", alg), get("refresh", "oidc-provider", alg)
        if c and o:
            v = rps(c) / rps(o)
            target(f"`refresh_token` grant/s ≥ 1.5× node oidc-provider, {alg} (issue 17)", v, v >= 1.5,
                   lambda x: f"{x:.2f}×")
    a = get("refresh-alternating", "castellan", "RS256")
    if a:
        v = a["median_vs_oidc_provider"]
        target("`refresh_token` grant/s ≥ 1.5× node oidc-provider, RS256, both loaded in turn (bench/refresh.sh, "
               "issue 17)", v, v >= 1.5,
               lambda x: f"{x:.2f}× (median of {len(a['runs'])} rounds; Castellan ÷ two-signature limit "
                         f"{a['median_vs_limit']:.2f})")
    sg = get("sign", "castellan", "RS256")
    if sg:
        v = sg["median_ratio"]
        target("`POST /v1/tokens/sign` RS256 ≥ 0.85 of raw RSA-2048 signing, one core (bench/sign.sh, issue 18)", v,
               v >= 0.85, lambda x: f"{x:.2f} (median of {len(sg['runs'])} rounds; ÷ the token endpoint "
                                    f"{sg['median_sign_vs_token']:.2f})")
    c, raw = get("signin", "castellan", "argon2id"), get("raw", "castellan", "argon2id")
    if c and raw:
        v = rps(c) / rps(raw)
        target("password sign-ins/s ≥ 0.85 of raw argon2id, same parameters, one core (issue 17)", v, v >= 0.85,
               lambda x: f"{x:.2f}")
    b = get("signin-burst", "castellan", "argon2id")
    if b:
        target("peak RSS under 200 concurrent sign-ins ≤ 100 MiB (issue 17)", mib(b), mib(b) <= 100,
               lambda x: f"{x:.1f} MiB")
    out += ["", "| target | measured | |", "|---|---|---|"] + t

    discarded = sum(r.get("discarded_runs", 0) for r in res)
    kept = sum(1 for r in res if contended(r))
    out += ["", f"{discarded} run(s) discarded and repeated because other processes took more than {MAX_OTHER:g}% "
            f"of CPU 0 during them" + (f"; † marks the {kept} figure(s) that still include such a run." if kept else
                                       "; every kept run had CPU 0 to itself (see `cpu0_other_pct` in the JSON).")]
    la = doc["load_average"]
    v = doc["versions"]
    out += ["", f"Run `{doc['command'].strip()}` on {doc['date']} ({doc['machine']['nproc']} × {doc['machine']['cpu']}), "
            f"load average at start {la['at_start']}, {doc['elapsed_secs']} s in all. Castellan {v['castellan']}, "
            f"{v['rustc']}; node {v['node']}, oidc-provider {v['oidc-provider']}; {v['python']}, "
            f"{v['python_packages']}; cfssl {v['cfssl'].replace('Version: ', '')}; {v['wrk']}."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
