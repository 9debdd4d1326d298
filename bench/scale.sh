#!/usr/bin/env bash
# Cost that grows with the change, not with the store (issue 24): one server on the embedded store,
# grown to TARGET clients through POST /v1/clients, measured at the start and at the end:
# - client creation per second (wrk, 8 connections; every request a new client) in each round;
# - idle CPU of the server over IDLE seconds (utime+stime from /proc), resident memory (VmRSS);
# - ready time after a restart at full size (until /readyz answers 200);
# - client_credentials tokens/s (ES256) for one client, with 1 client in the store and with TARGET
#   (median of three 8 s runs, with the slowest and fastest).
# The server runs on CPU 0, wrk on CPU 1.
#
# usage: bench/scale.sh [TARGET] [ROUND_SECONDS] [IDLE]     (defaults: 100000 clients, 10 s, 20 s)
# needs: wrk, taskset, jq, curl
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:-100000}
ROUND=${2:-10}
IDLE=${3:-20}
cargo build --release -q -p castellan
BIN=target/release/castellan
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
d="$work/data"
"$BIN" init --data-dir "$d" --alg ES256 >/dev/null 2>&1
cred=$("$BIN" client create bench --scope bench --json --data-dir "$d")
auth="Basic $(printf '%s:%s' "$(jq -r .client_id <<<"$cred")" "$(jq -r .client_secret <<<"$cred")" | base64 -w0)"
port=$((19000 + RANDOM % 1000))
url="http://127.0.0.1:$port"

start() {
  taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:$port --log-level warn &
  pid=$!
  t0=$(date +%s.%N)
  for _ in $(seq 1 600); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.01; done
  ready_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b-a}')
}
cpu_ticks() { awk '{print $14+$15}' /proc/$pid/stat; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status; }
idle_cpu() {
  sleep 3
  local a b; a=$(cpu_ticks); sleep "$IDLE"; b=$(cpu_ticks)
  awk -v a="$a" -v b="$b" -v t="$IDLE" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", 100*(b-a)/hz/t}'
}
# Three 8 s runs after a 2 s warm-up: "median (min-max)".
tokens() {
  AUTH="$auth" taskset -c 1 wrk -t1 -c32 -d2s -s bench/token.lua "$url/oauth2/token" >/dev/null
  for _ in 1 2 3; do
    AUTH="$auth" taskset -c 1 wrk -t1 -c32 -d8s -s bench/token.lua "$url/oauth2/token" | grep '^RESULT' | sed -E 's/.*rps=([0-9.]+).*/\1/'
  done | sort -n | paste -sd' ' | awk '{printf "%s (%s-%s)", $2, $1, $3}'
}

start
admin=$("$BIN" token --credential "$d/admin-credential.json" --server "$url")
bearer="Bearer $admin"
echo "1 client:   ready ${ready_s}s  idle CPU $(idle_cpu)%  RSS $(rss_mib) MiB  tokens/s $(tokens)"
n=$(curl -sf -H "Authorization: $bearer" "$url/v1/clients" | jq '.clients | length')
r=0
while [ "$n" -lt "$TARGET" ]; do
  r=$((r + 1))
  line=$(ROUND=$r AUTH="$bearer" taskset -c 1 wrk -t2 -c8 -d"${ROUND}s" -s bench/client_create.lua "$url/v1/clients" | grep '^RESULT')
  grep -q 'non2xx=0 errors=0' <<<"$line" || { echo "errors while creating clients: $line" >&2; exit 1; }
  made=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
  n=$((n + made))
  printf 'round %3d: %6d clients  create/s %s  p99 %s ms  RSS %s MiB\n' "$r" "$n" \
    "$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")" "$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")" "$(rss_mib)"
done
echo "$n clients: idle CPU $(idle_cpu)%  RSS $(rss_mib) MiB  tokens/s $(tokens)"
kill -TERM $pid; wait $pid 2>/dev/null || true
start
echo "$n clients after a restart: ready ${ready_s}s  idle CPU $(idle_cpu)%  RSS $(rss_mib) MiB  tokens/s $(tokens)  RSS after load $(rss_mib) MiB"
kill -TERM $pid; wait $pid 2>/dev/null || true
