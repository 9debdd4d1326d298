#!/usr/bin/env bash
# Issue 19: client_credentials tokens per second on one core, RS256, on one server: client_secret_basic
# and an RFC 7523 client assertion (a Kubernetes-shaped service-account token of a test issuer, RS256,
# jwks_file); the two loads alternate, 3 rounds (the first of each with 5 s of warm-up), 8 s each;
# server on CPU 0, wrk -t1 -c32 on CPU 1. bench/run makes the same two rows in its full run.
# usage: bench/assertion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p castellan
BIN=$PWD/target/release/castellan
# needs: wrk, jq, curl, taskset, python3 with PyJWT[crypto]; prints one RESULT line per load
w=$(mktemp -d); trap 'kill $spid 2>/dev/null; rm -rf "$w"' EXIT
$BIN init --data-dir $w/d --alg RS256 >/dev/null 2>&1
cred=$($BIN client create bench --scope bench --json --data-dir $w/d)
auth="Basic $(printf '%s:%s' "$(jq -r .client_id <<<"$cred")" "$(jq -r .client_secret <<<"$cred")" | base64 -w0)"
mkdir $w/iss; python3 crates/castellan/tests/castellan/k8s_issuer.py keys $w/iss
cat > $w/c.toml <<TOML
[[trusted_issuer]]
issuer = "https://oidc.bench.internal"
jwks_file = "$w/iss/jwks.json"
audience = "castellan"
subject = "system:serviceaccount:bench:*"
client_id = "k8s:{namespace}:{serviceaccount}"
scopes = ["bench"]
TOML
port=$((20000 + RANDOM % 1000))
taskset -c 0 $BIN serve --data-dir $w/d --config $w/c.toml --listen 127.0.0.1:$port --log-level warn & spid=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$port/readyz && break; sleep 0.1; done
sat=$(python3 crates/castellan/tests/castellan/k8s_issuer.py token $w/iss '{"iss":"https://oidc.bench.internal","aud":"castellan","namespace":"bench","sa":"worker","exp_in":7200}')
abody="grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=$sat"
curl -sf -d "$abody" http://127.0.0.1:$port/oauth2/token | jq -c '{scope, expires_in}'
url=http://127.0.0.1:$port/oauth2/token
for round in 1 2 3; do
  for kind in basic assertion; do
    if [ $kind = basic ]; then A=$auth B=grant_type=client_credentials; else A="" B=$abody; fi
    [ $round = 1 ] && AUTH=$A BODY=$B taskset -c 1 wrk -t1 -c32 -d5s -s bench/token.lua $url >/dev/null
    echo "$kind $(AUTH=$A BODY=$B taskset -c 1 wrk -t1 -c32 -d8s -s bench/token.lua $url | grep RESULT)"
  done
done
uptime
