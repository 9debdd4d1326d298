#!/usr/bin/env bash
# P-256 leaf certificates per second with a server-generated key, over HTTP: Castellan's
# POST /v1/pki/issue/server against `cfssl serve`'s /api/v1/cfssl/newcert, same machine, same load.
#
# Both servers run at once, pinned to CPU 0; wrk (-t1 -c16) on CPU 1 loads one of them at a time. After
# a 2 s warm-up of each, RUNS rounds of DURATION seconds alternate them (Castellan, then cfssl), so each
# round's ratio compares two runs seconds apart: this VM's speed drifts by 10% and more between
# minutes, which separate runs of the two would fold into the ratio. Prints each round and the medians.
# Before measuring, one response of each is checked: the certificate verifies against its CA with
# `openssl verify` (so nobody is measured doing less work).
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
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }
wait_port() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }

# Castellan
d="$work/castellan"
"$BIN" init --data-dir "$d" --alg ES256 >/dev/null 2>&1
cport=$((19000 + RANDOM % 500))
taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:$cport --log-level warn &
cpid=$!
wait_port $cport
cred="$d/admin-credential.json"
tok=$(curl -sf -u "$(jq -r .client_id "$cred"):$(jq -r .client_secret "$cred")" -d grant_type=client_credentials \
  "http://127.0.0.1:$cport/oauth2/token" | jq -r .access_token)
cbody='{"common_name":"bench.internal","dns_names":["bench.internal"],"ttl_secs":86400,"key_type":"p-256"}'
curl -sf -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' -d "$cbody" \
  "http://127.0.0.1:$cport/v1/pki/issue/server" > "$work/c.json"
jq -r .cert_pem "$work/c.json" > "$work/c-cert.pem"; jq -r .ca_bundle_pem "$work/c.json" > "$work/c-bundle.pem"
openssl verify -CAfile "$work/c-bundle.pem" "$work/c-cert.pem" >/dev/null

# cfssl serve, with its own P-256 CA
( cd "$work" && echo '{"CN":"Bench CA","key":{"algo":"ecdsa","size":256}}' | cfssl genkey -initca - 2>/dev/null | cfssljson -bare ca )
fport=$((19500 + RANDOM % 500))
taskset -c 0 cfssl serve -address 127.0.0.1 -port $fport -ca "$work/ca.pem" -ca-key "$work/ca-key.pem" -loglevel 5 >/dev/null 2>&1 &
fpid=$!
wait_port $fport
fbody='{"request":{"CN":"bench.internal","hosts":["bench.internal"],"key":{"algo":"ecdsa","size":256}}}'
curl -sf -d "$fbody" "http://127.0.0.1:$fport/api/v1/cfssl/newcert" | jq -r .result.certificate > "$work/f-cert.pem"
openssl verify -CAfile "$work/ca.pem" "$work/f-cert.pem" >/dev/null

load() { # seconds url body auth → the RESULT line, refusing any error
  local line
  line=$(BODY="$3" AUTH="$4" taskset -c 1 wrk -t1 -c"$CONNS" -d"$1" -s bench/issue.lua "$2" | grep '^RESULT')
  grep -q 'non2xx=0 errors=0' <<<"$line" || { echo "errors under load on $2: $line" >&2; exit 1; }
  echo "$line"
}
field() { sed -E "s/.*$1=([0-9.]+).*/\\1/"; }
C=("http://127.0.0.1:$cport/v1/pki/issue/server" "$cbody" "Bearer $tok")
F=("http://127.0.0.1:$fport/api/v1/cfssl/newcert" "$fbody" "")
load 2s "${C[@]}" >/dev/null
load 2s "${F[@]}" >/dev/null
: > "$work/rounds"
for i in $(seq 1 "$RUNS"); do
  c=$(load "${DURATION}s" "${C[@]}") f=$(load "${DURATION}s" "${F[@]}")
  printf '%s %s %s %s %s %s\n' "$(field rps <<<"$c")" "$(field p50_ms <<<"$c")" "$(field p99_ms <<<"$c")" \
    "$(field rps <<<"$f")" "$(field p50_ms <<<"$f")" "$(field p99_ms <<<"$f")" >> "$work/rounds"
  awk -v i="$i" 'END {printf "round %d: castellan %s leaves/s (p99 %s ms)  cfssl %s (p99 %s ms)  ratio %.2f\n", i, $1, $3, $4, $6, $1 / $4}' "$work/rounds"
done
col() { awk -v k="$1" '{print $k}' "$work/rounds"; }
ratios=$(awk '{printf "%.3f\n", $1 / $4}' "$work/rounds")
for pid in $cpid $fpid; do awk '/VmHWM/ {print $2}' /proc/"$pid"/status; done > "$work/rss"
printf 'castellan  leaves/s %8s (%s)  p50 %s ms  p99 %s ms  peak RSS %.1f MiB\n' "$(col 1 | median)" "$(col 1 | minmax)" \
  "$(col 2 | median)" "$(col 3 | median)" "$(awk 'NR==1 {print $1/1024}' "$work/rss")"
printf 'cfssl      leaves/s %8s (%s)  p50 %s ms  p99 %s ms  peak RSS %.1f MiB\n' "$(col 4 | median)" "$(col 4 | minmax)" \
  "$(col 5 | median)" "$(col 6 | median)" "$(awk 'NR==2 {print $1/1024}' "$work/rss")"
echo "castellan ÷ cfssl per round: median $(median <<<"$ratios") ($(minmax <<<"$ratios"))"

jq -n --arg date "$(date -u +%FT%TZ)" --arg cmd "bench/certs.sh $RUNS $DURATION" \
  --arg load "wrk -t1 -c$CONNS on CPU 1; both servers on CPU 0, loaded in turn" \
  --argjson rounds "$(jq -R -s 'split("\n") | map(select(length > 0) | split(" ") | map(tonumber)
      | {castellan: {leaves_per_sec: .[0], p50_ms: .[1], p99_ms: .[2]}, cfssl: {leaves_per_sec: .[3], p50_ms: .[4], p99_ms: .[5]},
         ratio: (.[0] / .[3])})' "$work/rounds")" \
  --argjson rss "$(jq -R -s 'split("\n") | map(select(length > 0) | tonumber)' "$work/rss")" \
  '{date: $date, command: $cmd, load: $load, rounds: $rounds, peak_rss_kib: {castellan: $rss[0], cfssl: $rss[1]}}' > "$OUT"
echo "wrote $OUT"
