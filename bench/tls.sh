#!/usr/bin/env bash
# What HTTPS costs the API: the same store served twice, in plain HTTP and in HTTPS with a self-issued
# P-256 certificate (`--tls-self-issued`), both pinned to CPU 0; wrk (-t1) on CPU 1 loads one at a time,
# alternating HTTP and HTTPS in each round (this VM's speed drifts between minutes).
#   1. ES256 tokens/s over kept-alive connections (the TLS cost per request: record encryption);
#   2. new connections/s: GET /healthz with `Connection: close`, so every request is a TCP connection
#      and, over HTTPS, a full TLS 1.3 handshake (X25519, an ECDSA P-256 signature by the server).
# Before measuring, curl checks that the HTTPS server's certificate verifies against the root.
#
# usage: bench/tls.sh [RUNS] [DURATION]     needs: wrk, jq, curl, taskset
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-6}
CONNS=${CONNS:-16}
cargo build --release -q -p castellan
BIN=$PWD/target/release/castellan
mkdir -p bench/results
OUT=bench/results/tls-$(date -u +%Y-%m-%dT%H%M).json
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }

d="$work/d"
"$BIN" init --data-dir "$d" --alg ES256 >/dev/null 2>&1
"$BIN" pki ca --data-dir "$d" --out "$work/ca" >/dev/null
cred=$("$BIN" client create bench --scope bench --json --data-dir "$d")
auth="Basic $(printf '%s:%s' "$(jq -r .client_id <<<"$cred")" "$(jq -r .client_secret <<<"$cred")" | base64 -w0)"
hport=$((20000 + RANDOM % 500))
sport=$((20500 + RANDOM % 500))
taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:$hport --log-level warn &
taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:$sport --log-level warn --tls-self-issued &
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$hport/readyz" >/dev/null &&
    curl -sf --cacert "$work/ca/root.pem" "https://localhost:$sport/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf --cacert "$work/ca/root.pem" -H "Authorization: $auth" -d grant_type=client_credentials \
  "https://localhost:$sport/oauth2/token" | jq -e .access_token >/dev/null

load() { # script url [extra wrk args...] → the RESULT line, refusing any error
  local script=$1 url=$2 line
  shift 2
  line=$(AUTH="$auth" taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" -s "$script" "$@" "$url" | grep '^RESULT')
  grep -q 'non2xx=0 errors=0' <<<"$line" || { echo "errors under load on $url: $line" >&2; exit 1; }
  echo "$line"
}
rps() { sed -E 's/.*rps=([0-9.]+).*/\1/'; }
declare -A r
for case in tokens connections; do for scheme in http https; do r[$case-$scheme]=""; done; done
for round in $(seq 1 "$RUNS"); do
  for scheme in http https; do
    port=$hport; [ "$scheme" = https ] && port=$sport
    t=$(load bench/token.lua "$scheme://127.0.0.1:$port/oauth2/token" | rps)
    c=$(load bench/jwks.lua "$scheme://127.0.0.1:$port/healthz" -H "Connection: close" | rps)
    r[tokens-$scheme]+="$t "
    r[connections-$scheme]+="$c "
    echo "round $round $scheme: tokens/s $t, new connections/s $c"
  done
done
json="{"
for case in tokens connections; do
  for scheme in http https; do
    vals=$(tr ' ' '\n' <<<"${r[$case-$scheme]}" | grep .)
    m=$(median <<<"$vals"); mm=$(minmax <<<"$vals")
    echo "$case over $scheme: median $m ($mm)"
    json+="\"$case-$scheme\":{\"median\":$m,\"range\":\"$mm\"},"
  done
done
json+="\"runs\":$RUNS,\"duration_s\":$DURATION,\"conns\":$CONNS,\"commit\":\"$(git rev-parse --short HEAD)\",\"date\":\"$(date -u +%FT%TZ)\"}"
echo "$json" | jq . > "$OUT"
echo "wrote $OUT"
