#!/usr/bin/env bash
# Token throughput over HTTP against the raw signing limit, per algorithm, on this machine.
#
# The server is pinned to CPU 0 (taskset), wrk to CPU 1, so "the cores the server gets" is one core and
# the limit is the raw signing rate of one thread, measured on the same core in the same run.
# Each figure is the median of RUNS runs of DURATION seconds (after a warm-up), with min and max.
#
# usage: bench/tokens.sh [RUNS] [DURATION]        (defaults: 3 runs of 8 s)
# needs: wrk (apt-get install wrk), taskset, jq, curl
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-8}
CONNS=${CONNS:-32}
cargo build --release -q -p castellan
cargo build --release -q -p castellan-core --example raw_sign
BIN=target/release/castellan
RAW=target/release/examples/raw_sign
mkdir -p bench/results
OUT=bench/results/tokens-$(date -u +%Y-%m-%dT%H%M).json  # one file per run
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }

results=()
for alg in RS256 ES256 EdDSA; do
  d="$work/$alg"
  "$BIN" init --data-dir "$d" --alg "$alg" >/dev/null 2>&1
  cred=$("$BIN" client create bench --scope bench --json --data-dir "$d")
  auth="Basic $(printf '%s:%s' "$(jq -r .client_id <<<"$cred")" "$(jq -r .client_secret <<<"$cred")" | base64 -w0)"
  port=$((18000 + RANDOM % 1000))
  taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:$port --log-level warn &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  # Sanity: the token verifies against the JWKS (decoded by jq; signature checked in the test suite).
  curl -sf -H "Authorization: $auth" -d grant_type=client_credentials "http://127.0.0.1:$port/oauth2/token" | jq -e .access_token >/dev/null
  AUTH="$auth" taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s bench/token.lua "http://127.0.0.1:$port/oauth2/token" >/dev/null
  rps=(); p50=(); p99=()
  for _ in $(seq 1 "$RUNS"); do
    line=$(AUTH="$auth" taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/token.lua "http://127.0.0.1:$port/oauth2/token" | grep '^RESULT')
    grep -q 'non2xx=0 errors=0' <<<"$line" || { echo "errors under load: $line" >&2; exit 1; }
    rps+=("$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")")
    p50+=("$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")")
    p99+=("$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")")
  done
  jwks_line=""
  if [ "$alg" = RS256 ]; then
    jwks_line=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/jwks.lua "http://127.0.0.1:$port/.well-known/jwks.json" | grep '^RESULT')
  fi
  rss_kib=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  raws=()
  for _ in $(seq 1 "$RUNS"); do raws+=("$(taskset -c 0 "$RAW" "$alg" 3 | jq .signatures_per_sec)"); done
  m_rps=$(printf '%s\n' "${rps[@]}" | median); m_raw=$(printf '%s\n' "${raws[@]}" | median)
  ratio=$(awk -v a="$m_rps" -v b="$m_raw" 'BEGIN {printf "%.2f", a/b}')
  printf '%-6s tokens/s %8s (%s)  p50 %s ms  p99 %s ms  raw sign/s %8s (%s)  ratio %s  peak RSS %s MiB\n' \
    "$alg" "$m_rps" "$(printf '%s\n' "${rps[@]}" | minmax)" "$(printf '%s\n' "${p50[@]}" | median)" \
    "$(printf '%s\n' "${p99[@]}" | median)" "$m_raw" "$(printf '%s\n' "${raws[@]}" | minmax)" "$ratio" \
    "$(awk -v k="$rss_kib" 'BEGIN {printf "%.1f", k/1024}')"
  [ -n "$jwks_line" ] && echo "JWKS   $jwks_line"
  results+=("$(jq -n --arg alg "$alg" --argjson rps "$(printf '%s\n' "${rps[@]}" | jq -s .)" \
    --argjson raw "$(printf '%s\n' "${raws[@]}" | jq -s .)" --argjson p50 "$(printf '%s\n' "${p50[@]}" | jq -s .)" \
    --argjson p99 "$(printf '%s\n' "${p99[@]}" | jq -s .)" --argjson rss "$rss_kib" --arg jwks "$jwks_line" \
    '{alg:$alg, tokens_per_sec:$rps, raw_signatures_per_sec:$raw, p50_ms:$p50, p99_ms:$p99, peak_rss_kib:$rss, jwks:$jwks}')")
done
printf '%s\n' "${results[@]}" | jq -s --arg date "$(date -u +%FT%TZ)" --arg cmd "bench/tokens.sh $RUNS $DURATION" \
  --arg load "wrk -t1 -c$CONNS on CPU 1; server on CPU 0" '{date:$date, command:$cmd, load:$load, results:.}' > "$OUT"
echo "wrote $OUT"
