#!/usr/bin/env bash
# Issue 20: a KV version 2 read through the Vault-shaped API (GET /v1/secret/data/bench/value with
# X-Vault-Token, an AppRole login's token) against the native read (GET /v1/secrets/bench/value with a
# Bearer access token) of the same 64-byte secret, on one server in the same run; the two loads
# alternate, RUNS rounds of DURATION s (after 2 s of warm-up each); server on CPU 0, wrk -t1 -c16 on
# CPU 1. Target: the Vault read at least 0.9 of the native one. Both answers are checked first (the
# same value), and any non-2xx answer under load aborts.
# usage: bench/vault.sh [RUNS] [DURATION] [--no-build]     needs: wrk, jq, curl, taskset
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-8}
[ "${3:-}" = --no-build ] || cargo build --release -q -p castellan
BIN=${CASTELLAN_BIN:-$PWD/target/release/castellan}
mkdir -p bench/results
OUT=bench/results/vault-$(date -u +%Y-%m-%dT%H%M).json
w=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$w"' EXIT
"$BIN" init --data-dir "$w/d" --alg ES256 >/dev/null 2>&1
"$BIN" client create bench --scope secrets:read --scope secrets:write --data-dir "$w/d" --json > "$w/cred.json"
id=$(jq -r .client_id "$w/cred.json"); secret=$(jq -r .client_secret "$w/cred.json")
port=$((21000 + RANDOM % 500))
taskset -c 0 "$BIN" serve --data-dir "$w/d" --listen 127.0.0.1:$port --log-level warn &
pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 1 100); do curl -sf -o /dev/null "$base/readyz" && break; sleep 0.1; done
tok=$(curl -sf -u "$id:$secret" -d grant_type=client_credentials "$base/oauth2/token" | jq -r .access_token)
vt=$(curl -sf -X POST -d "{\"role_id\":\"$id\",\"secret_id\":\"$secret\"}" "$base/v1/auth/approle/login" | jq -r .auth.client_token)
value=$(head -c 48 /dev/urandom | base64 -w0)   # 64 characters
curl -sf -X PUT -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -d "{\"value\":\"$value\"}" "$base/v1/secrets/bench/value" >/dev/null
native=$(curl -sf -H "Authorization: Bearer $tok" "$base/v1/secrets/bench/value" | jq -r .value)
viakv=$(curl -sf -H "X-Vault-Token: $vt" "$base/v1/secret/data/bench/value" | jq -r .data.data.value)
[ "$native" = "$value" ] && [ "$viakv" = "$value" ] || { echo "the values read back differ" >&2; exit 1; }

load() { # kind seconds → the RESULT line, refusing any error
  local line url auth hdr
  if [ "$1" = native ]; then url=$base/v1/secrets/bench/value; auth="Bearer $tok"; hdr=""
  else url=$base/v1/secret/data/bench/value; auth=""; hdr=$vt; fi
  line=$(METHOD=GET AUTH="$auth" VAULT_TOKEN="$hdr" taskset -c 1 wrk -t1 -c16 -d"$2" -s bench/vault.lua "$url" | grep '^RESULT')
  grep -q 'non2xx=0 errors=0' <<<"$line" || { echo "errors under load ($1): $line" >&2; exit 1; }
  echo "$line"
}
field() { sed -E "s/.*$1=([0-9.]+).*/\\1/"; }
: > "$w/rounds"
for i in $(seq 1 "$RUNS"); do
  for kind in native vault; do
    load $kind 2s >/dev/null
    r=$(load $kind "${DURATION}s")
    echo "$kind $(field rps <<<"$r") $(field p50_ms <<<"$r") $(field p99_ms <<<"$r")" >> "$w/rounds"
  done
  n=$(grep '^native' "$w/rounds" | tail -1 | cut -d' ' -f2); v=$(grep '^vault' "$w/rounds" | tail -1 | cut -d' ' -f2)
  echo "round $i: native $n req/s, vault kv $v req/s, ratio $(awk -v a="$v" -v b="$n" 'BEGIN{printf "%.3f", a/b}')"
done
ratio=$(awk '/^native/ {n[++i]=$2} /^vault/ {v[++j]=$2} END {asort(n); asort(v); printf "%.3f", v[int((j+1)/2)]/n[int((i+1)/2)]}' "$w/rounds")
echo "median ratio vault/native: $ratio (target >= 0.9); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
jq -n --arg date "$(date -u +%FT%TZ)" --arg cmd "bench/vault.sh $RUNS $DURATION" --argjson ratio "$ratio" \
  --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson rounds "$(jq -R -s 'split("\n") | map(select(length > 0) | split(" ")
      | {kind: .[0], rps: (.[1] | tonumber), p50_ms: (.[2] | tonumber), p99_ms: (.[3] | tonumber)})' "$w/rounds")" \
  '{date: $date, command: $cmd, load: "wrk -t1 -c16 on CPU 1; server on CPU 0", rounds: $rounds,
    median_ratio_vault_to_native: $ratio, target: 0.9, load_average_at_end: $load}' > "$OUT"
echo "wrote $OUT"
