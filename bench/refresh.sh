#!/usr/bin/env bash
# Issue 17: the refresh_token grant, Castellan beside node oidc-provider, in alternating rounds.
#
# bench/run measures each server for RUNS × DURATION s and then the next one: on a VM whose speed
# drifts by ±20 % within a minute, the ratio of two such medians moves with the drift. Here both
# servers run at once (each pinned to CPU 0, wrk -t1 -c32 on CPU 1) and each round loads Castellan,
# then oidc-provider, then measures the raw RS256 (or ES256) rate of CPU 0 (raw_sign), so a round's
# ratios compare runs seconds apart. Per round: Castellan ÷ oidc-provider (target ≥ 1.5) and Castellan
# ÷ the two-signature limit (raw ÷ 2: a refresh signs an access token and an ID token).
#
# Each request presents a refresh token no other used (bench/refresh.lua keeps a pool); the pools are
# made before each run: Castellan's by its real flow (bench/peers/signin_seed.py), oidc-provider's by
# its models (REFRESH=1 in bench/peers/node/server.mjs). One answer of each is verified with PyJWT
# against its JWKS first (bench/peers/check_token.py); any non-2xx answer or socket error fails.
#
# usage: bench/refresh.sh [--no-build]   (bench/run calls it with --no-build and its RESULTS file)
# env:   RUNS (5) DURATION (4) WARMUP (10: node's JIT keeps speeding oidc-provider up for tens of seconds) RAW_SECS (2) CONNS (32) ALG (RS256); BIN, RAW (binaries);
#        PY (a python with PyJWT[crypto], default python3); RESULTS (a JSON-lines file to append to)
# needs: wrk, jq, curl, taskset, node with bench/peers/node installed (npm ci)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = --no-build ] || {
  cargo build --release -q -p castellan
  cargo build --release -q -p castellan-core --example raw_sign
}
BIN=${BIN:-$PWD/target/release/castellan} RAW=${RAW:-$PWD/target/release/examples/raw_sign}
RUNS=${RUNS:-5} DURATION=${DURATION:-4} WARMUP=${WARMUP:-10} RAW_SECS=${RAW_SECS:-2} CONNS=${CONNS:-32}
ALG=${ALG:-RS256} PY=${PY:-python3}
[ -d bench/peers/node/node_modules ] || (cd bench/peers/node && npm ci --silent)
w=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$w"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
PW="correct horse battery staple" REDIRECT=https://app.bench.internal/cb

"$BIN" init --data-dir "$w/d" --alg "$ALG" > /dev/null 2>&1
printf '%s\n' "$PW" | "$BIN" user create alice --password-stdin --data-dir "$w/d" > /dev/null
cred=$("$BIN" client create web --grant authorization_code --grant refresh_token --redirect-uri "$REDIRECT" \
  --audience https://api.bench.internal --json --data-dir "$w/d")
cid=$(jq -r .client_id <<<"$cred") csec=$(jq -r .client_secret <<<"$cred")
cport=$(free_port) cbase=http://127.0.0.1:$cport
taskset -c 0 "$BIN" serve --data-dir "$w/d" --listen 127.0.0.1:$cport --log-level warn > "$w/castellan.log" 2>&1 &
pids+=($!)
wait_http "$cbase/readyz" || { echo "castellan did not start: $(cat "$w/castellan.log")" >&2; exit 1; }
cauth="Basic $(printf '%s:%s' "$cid" "$csec" | base64 -w0)"
cseed() { "$PY" bench/peers/signin_seed.py "$cbase" "$cid" "$csec" "$REDIRECT" alice "$PW" $((2 * CONNS)) "$w/cseed"; }

secret=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')
oport=$(free_port) obase=http://127.0.0.1:$oport
( cd bench/peers/node && exec taskset -c 0 env NODE_ENV=production PORT="$oport" ALG="$ALG" CLIENT_ID=bench \
    CLIENT_SECRET="$secret" REFRESH=1 node server.mjs ) > "$w/oidc.log" 2>&1 &
pids+=($!)
wait_http "$obase/jwks" || { echo "oidc-provider did not start: $(cat "$w/oidc.log")" >&2; exit 1; }
oauth="Basic $(printf 'bench:%s' "$secret" | base64 -w0)"
oseed() { curl -sf -X POST "$obase/bench/seed?n=$((2 * CONNS))" | jq -r '.refresh_tokens[]' > "$w/oseed"; }

check() { # name seed-fn seed-file auth token-url jwks-url
  $2
  curl -sf -H "Authorization: $4" -d "grant_type=refresh_token&refresh_token=$(head -1 "$3")" "$5" > "$w/t.json" \
    || { echo "$1: the refresh request failed" >&2; exit 1; }
  jq -e '.id_token and .refresh_token' "$w/t.json" > /dev/null || { echo "$1: no ID token or refresh token" >&2; exit 1; }
  out=$("$PY" bench/peers/check_token.py "$w/t.json" "$6" "$ALG") || { echo "$1: $out" >&2; exit 1; }
  echo "check $1: $out" >&2
}
check castellan cseed "$w/cseed" "$cauth" "$cbase/oauth2/token" "$cbase/.well-known/jwks.json"
check oidc-provider oseed "$w/oseed" "$oauth" "$obase/token" "$obase/jwks"

load() { # seed-fn seed-file auth url secs → the RESULT line
  $1
  SEED=$2 AUTH=$3 taskset -c 1 wrk -t1 -c"$CONNS" -d"${5}s" -s bench/refresh.lua "$4" | grep '^RESULT'
}
rps() { sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$1"; }
load cseed "$w/cseed" "$cauth" "$cbase/oauth2/token" "$WARMUP" > /dev/null
load oseed "$w/oseed" "$oauth" "$obase/token" "$WARMUP" > /dev/null
rounds=()
for r in $(seq "$RUNS"); do
  cl=$(load cseed "$w/cseed" "$cauth" "$cbase/oauth2/token" "$DURATION")
  ol=$(load oseed "$w/oseed" "$oauth" "$obase/token" "$DURATION")
  for l in "$cl" "$ol"; do
    grep -q 'non2xx=0 errors=0' <<<"$l" || { echo "errors under load: $l" >&2; exit 1; }
  done
  raw=$(taskset -c 0 "$RAW" "$ALG" "$RAW_SECS" | jq .signatures_per_sec)
  c=$(rps "$cl") o=$(rps "$ol")
  vs=$(awk -v a="$c" -v b="$o" 'BEGIN {printf "%.2f", a / b}')
  lim=$(awk -v a="$c" -v b="$raw" 'BEGIN {printf "%.2f", a / (b / 2)}')
  echo "round $r: castellan $c/s, oidc-provider $o/s, raw $ALG $raw/s: castellan ÷ oidc-provider $vs, ÷ (raw ÷ 2) $lim" >&2
  rounds+=("{\"castellan\":$(sed -E 's/^RESULT rps=([0-9.]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+).*/{"rps":\1,"p50_ms":\2,"p99_ms":\3}/' <<<"$cl"),\"oidc_provider\":$(sed -E 's/^RESULT rps=([0-9.]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+).*/{"rps":\1,"p50_ms":\2,"p99_ms":\3}/' <<<"$ol"),\"raw\":$raw,\"vs_oidc_provider\":$vs,\"vs_limit\":$lim}")
done
row=$(printf '%s\n' "${rounds[@]}" | jq -c -s --arg alg "$ALG" \
  --arg load "wrk -t1 -c$CONNS on CPU 1, refresh.lua, ${WARMUP} s warm-up + $RUNS rounds × ${DURATION} s each server, raw_sign $ALG $RAW_SECS s on CPU 0 per round" \
  'def med: sort | .[length / 2 | floor];
   {kind:"refresh-alternating", server:"castellan", alg:$alg, load:$load, runs:.,
    median_vs_oidc_provider:(map(.vs_oidc_provider) | med), median_vs_limit:(map(.vs_limit) | med), target:1.5}')
echo "RESULT refresh $ALG castellan ÷ oidc-provider median=$(jq .median_vs_oidc_provider <<<"$row") (target ≥ 1.5) ÷ two-signature limit median=$(jq .median_vs_limit <<<"$row") $(uptime | sed 's/.*load/load/')"
[ -n "${RESULTS:-}" ] && echo "$row" >> "$RESULTS"
exit 0
