#!/usr/bin/env bash
# Two builds of castellan side by side: ES256 tokens and the JWKS over HTTP, the two servers loaded in
# turn (A, B, A, B, …) so that the machine's drift falls on both alike. For a change to the serving
# path: build the old commit into another target directory and compare.
#
# usage: bench/ab.sh BIN_A BIN_B [ROUNDS] [DURATION]     (defaults: 4 rounds of 6 s)
# e.g.:  git worktree add /tmp/base <commit> && (cd /tmp/base && CARGO_TARGET_DIR=/tmp/base-target \
#          cargo build --release -p castellan) && cargo build --release -p castellan &&
#        bench/ab.sh /tmp/base-target/release/castellan target/release/castellan
# needs: wrk, taskset, jq, curl. Each server is pinned to CPU 0 (one at a time), wrk to CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "$1"); B=$(realpath "$2")
ROUNDS=${3:-4}
DURATION=${4:-6}
CONNS=${CONNS:-32}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # BIN DIR PORT -> pid
  # Its output goes elsewhere: this function's own output is read by a command substitution, which
  # would otherwise wait for the server to exit.
  taskset -c 0 "$1" serve --data-dir "$2" --listen "127.0.0.1:$3" --log-level warn >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$3/readyz" >/dev/null && break; sleep 0.1; done
  echo "$pid"
}
rps() { grep '^RESULT' | sed -E 's/.*rps=([0-9.]+).*/\1/'; }
# CPU time the server used (user + system, clock ticks), for the cost of a request in µs of CPU: less
# disturbed than requests/s by what else the VM's host does, since time the CPU was taken away is not
# counted.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_req() { # TICKS_BEFORE TICKS_AFTER RPS -> µs of server CPU per request
  awk -v a="$1" -v b="$2" -v r="$3" -v d="$DURATION" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / (r * d)}'
}

declare -A auth port
side_n=0
for side in A B; do
  bin=${!side}
  d="$work/$side"
  "$bin" init --data-dir "$d" --alg ES256 >/dev/null 2>&1
  cred=$("$bin" client create bench --scope bench --json --data-dir "$d")
  auth[$side]="Basic $(printf '%s:%s' "$(jq -r .client_id <<<"$cred")" "$(jq -r .client_secret <<<"$cred")" | base64 -w0)"
  port[$side]=$(( (side_n += 1) * 1000 + 17000 + RANDOM % 1000 ))
done

printf 'round side  ES256 tokens/s  µs CPU/token  JWKS/s  µs CPU/JWKS\n'
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=${!side}
    p=${port[$side]}
    pid=$(start "$bin" "$work/$side" "$p")
    AUTH="${auth[$side]}" taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s bench/token.lua "http://127.0.0.1:$p/oauth2/token" >/dev/null
    c0=$(ticks "$pid")
    t=$(AUTH="${auth[$side]}" taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/token.lua "http://127.0.0.1:$p/oauth2/token" | rps)
    c1=$(ticks "$pid")
    j=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/jwks.lua "http://127.0.0.1:$p/.well-known/jwks.json" | rps)
    c2=$(ticks "$pid")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    printf '%5s %4s  %14s  %12s  %6s  %11s\n' "$r" "$side" "$t" "$(per_req "$c0" "$c1" "$t")" "$j" "$(per_req "$c1" "$c2" "$j")"
  done
done
