#!/usr/bin/env bash
# Secrets read over HTTP: GET /v1/secrets/{name} (a 64-byte value) with a `secrets:read` token, the
# server pinned to CPU 0, wrk (-t1 -c16) on CPU 1; RUNS rounds of DURATION seconds; then the same for
# PUT (a new version each request). Every read opens the value (AES-256-GCM under its data key, which is
# unwrapped by the master key) after reading its row from the store: nothing is cached.
#
# usage: bench/secrets.sh [RUNS] [DURATION]     needs: wrk, jq, curl, taskset
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-8}
cargo build --release -q -p castellan
BIN=$PWD/target/release/castellan
mkdir -p bench/results
OUT=bench/results/secrets-$(date -u +%Y-%m-%dT%H%M).json
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
d="$work/data"
"$BIN" init --data-dir "$d" --alg ES256 >/dev/null 2>&1
"$BIN" client create bench --scope secrets:read --scope secrets:write --data-dir "$d" --json > "$work/cred.json"
port=$((19000 + RANDOM % 500))
taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:$port --log-level warn &
pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
tok=$(curl -sf -u "$(jq -r .client_id "$work/cred.json"):$(jq -r .client_secret "$work/cred.json")" \
  -d grant_type=client_credentials "http://127.0.0.1:$port/oauth2/token" | jq -r .access_token)
value=$(head -c 48 /dev/urandom | base64 -w0)   # 64 characters
curl -sf -X PUT -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -d "{\"value\":\"$value\"}" "http://127.0.0.1:$port/v1/secrets/bench/value" >/dev/null
got=$(curl -sf -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/v1/secrets/bench/value" | jq -r .value)
[ "$got" = "$value" ] || { echo "the value read back differs" >&2; exit 1; }

load() { # method seconds [body] → the RESULT line, refusing any error
  local line
  line=$(METHOD="$1" BODY="${3:-}" AUTH="Bearer $tok" taskset -c 1 wrk -t1 -c16 -d"$2" -s bench/issue.lua \
    "http://127.0.0.1:$port/v1/secrets/bench/value" | grep '^RESULT')
  grep -q 'non2xx=0 errors=0' <<<"$line" || { echo "errors under load: $line" >&2; exit 1; }
  echo "$line"
}
field() { sed -E "s/.*$1=([0-9.]+).*/\\1/"; }
: > "$work/rounds"
load GET 2s >/dev/null
for i in $(seq 1 "$RUNS"); do
  g=$(load GET "${DURATION}s")
  echo "round $i: GET $(field rps <<<"$g") req/s (p99 $(field p99_ms <<<"$g") ms)"
  echo "get $(field rps <<<"$g") $(field p50_ms <<<"$g") $(field p99_ms <<<"$g")" >> "$work/rounds"
done
for i in $(seq 1 "$RUNS"); do
  p=$(load PUT "${DURATION}s" "{\"value\":\"$value\"}")
  echo "round $i: PUT $(field rps <<<"$p") versions/s (p99 $(field p99_ms <<<"$p") ms)"
  echo "put $(field rps <<<"$p") $(field p50_ms <<<"$p") $(field p99_ms <<<"$p")" >> "$work/rounds"
done
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
echo "peak RSS $((rss / 1024)) MiB"
jq -n --arg date "$(date -u +%FT%TZ)" --arg cmd "bench/secrets.sh $RUNS $DURATION" --argjson rss "$rss" \
  --argjson rounds "$(jq -R -s 'split("\n") | map(select(length > 0) | split(" ")
      | {op: .[0], rps: (.[1] | tonumber), p50_ms: (.[2] | tonumber), p99_ms: (.[3] | tonumber)})' "$work/rounds")" \
  '{date: $date, command: $cmd, load: "wrk -t1 -c16 on CPU 1; server on CPU 0", rounds: $rounds, peak_rss_kib: $rss}' > "$OUT"
echo "wrote $OUT"
