#!/usr/bin/env bash
# P-256 leaf certificates per second with a server-generated key, over HTTP: Castellan's
# POST /v1/pki/issue/server against `cfssl serve`'s /api/v1/cfssl/newcert, same machine, same load.
#
# Both servers are pinned to CPU 0, wrk (-t1 -c16) to CPU 1. Median of RUNS runs of DURATION seconds
# after a 2 s warm-up. Before measuring, one response of each is checked: the certificate verifies
# against its CA with `openssl verify` (so nobody is measured doing less work).
#
# usage: bench/certs.sh [RUNS] [DURATION]     needs: wrk, golang-cfssl, jq, curl, openssl, taskset
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-8}
CONNS=${CONNS:-16}
cargo build --release -q -p castellan
BIN=$PWD/target/release/castellan
mkdir -p bench/results
OUT=bench/results/certs-$(date -u +%Y-%m-%dT%H%M).json  # one file per run: runs of a day do not overwrite each other
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }
wait_port() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }

measure() { # name url body auth pid
  local name=$1 url=$2 body=$3 auth=$4 pid=$5 rps=() p50=() p99=()
  BODY="$body" AUTH="$auth" taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s bench/issue.lua "$url" >/dev/null
  for _ in $(seq 1 "$RUNS"); do
    line=$(BODY="$body" AUTH="$auth" taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/issue.lua "$url" | grep '^RESULT')
    grep -q 'non2xx=0 errors=0' <<<"$line" || { echo "$name: errors under load: $line" >&2; exit 1; }
    rps+=("$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")")
    p50+=("$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line")")
    p99+=("$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")")
  done
  local rss; rss=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)
  printf '%-10s leaves/s %8s (%s)  p50 %s ms  p99 %s ms  peak RSS %.1f MiB\n' "$name" \
    "$(printf '%s\n' "${rps[@]}" | median)" "$(printf '%s\n' "${rps[@]}" | minmax)" \
    "$(printf '%s\n' "${p50[@]}" | median)" "$(printf '%s\n' "${p99[@]}" | median)" "$(awk -v k="$rss" 'BEGIN{print k/1024}')"
  jq -n --arg name "$name" --argjson rps "$(printf '%s\n' "${rps[@]}" | jq -s .)" \
    --argjson p50 "$(printf '%s\n' "${p50[@]}" | jq -s .)" --argjson p99 "$(printf '%s\n' "${p99[@]}" | jq -s .)" \
    --argjson rss "$rss" '{name:$name, leaves_per_sec:$rps, p50_ms:$p50, p99_ms:$p99, peak_rss_kib:$rss}' >> "$work/results.jsonl"
}

# Castellan
d="$work/castellan"
"$BIN" init --data-dir "$d" --alg ES256 >/dev/null 2>&1
port=$((19000 + RANDOM % 500))
taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:$port --log-level warn &
cpid=$!
wait_port $port
cred="$d/admin-credential.json"
tok=$(curl -sf -u "$(jq -r .client_id "$cred"):$(jq -r .client_secret "$cred")" -d grant_type=client_credentials \
  "http://127.0.0.1:$port/oauth2/token" | jq -r .access_token)
body='{"common_name":"bench.internal","dns_names":["bench.internal"],"ttl_secs":86400,"key_type":"p-256"}'
curl -sf -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -d "$body" \
  "http://127.0.0.1:$port/v1/pki/issue/server" > "$work/c.json"
jq -r .cert_pem "$work/c.json" > "$work/c-cert.pem"; jq -r .ca_bundle_pem "$work/c.json" > "$work/c-bundle.pem"
openssl verify -CAfile "$work/c-bundle.pem" "$work/c-cert.pem" >/dev/null
measure castellan "http://127.0.0.1:$port/v1/pki/issue/server" "$body" "Bearer $tok" $cpid
kill -TERM $cpid; wait $cpid 2>/dev/null || true

# cfssl serve, with its own P-256 CA
( cd "$work" && echo '{"CN":"Bench CA","key":{"algo":"ecdsa","size":256}}' | cfssl genkey -initca - 2>/dev/null | cfssljson -bare ca )
port=$((19500 + RANDOM % 500))
taskset -c 0 cfssl serve -address 127.0.0.1 -port $port -ca "$work/ca.pem" -ca-key "$work/ca-key.pem" -loglevel 5 >/dev/null 2>&1 &
fpid=$!
wait_port $port
fbody='{"request":{"CN":"bench.internal","hosts":["bench.internal"],"key":{"algo":"ecdsa","size":256}}}'
curl -sf -d "$fbody" "http://127.0.0.1:$port/api/v1/cfssl/newcert" | jq -r .result.certificate > "$work/f-cert.pem"
openssl verify -CAfile "$work/ca.pem" "$work/f-cert.pem" >/dev/null
measure cfssl "http://127.0.0.1:$port/api/v1/cfssl/newcert" "$fbody" "" $fpid
kill -TERM $fpid; wait $fpid 2>/dev/null || true

jq -s --arg date "$(date -u +%FT%TZ)" --arg cmd "bench/certs.sh $RUNS $DURATION" \
  --arg load "wrk -t1 -c$CONNS on CPU 1; server on CPU 0" '{date:$date, command:$cmd, load:$load, results:.}' \
  "$work/results.jsonl" > "$OUT"
echo "wrote $OUT"
