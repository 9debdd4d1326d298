#!/usr/bin/env bash
# JWKS requests/s of Castellan and node oidc-provider, alternating, to check the JWKS ratio of bench/run
# with both servers measured minutes apart at most. Both pinned to CPU 0, `wrk -t1 -c32` on CPU 1,
# 5 s warm-up each, then ROUNDS rounds of 8 s (Castellan, then oidc-provider). Run bench/run once first
# (it installs wrk and oidc-provider and builds Castellan).
#
# usage: bench/jwks_pair.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
BIN=$PWD/target/release/castellan
[ -x "$BIN" ] && [ -d bench/peers/node/node_modules/oidc-provider ] || { echo "run bench/run first" >&2; exit 2; }
d=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$d"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cp=$(port) np=$(port)
"$BIN" init --data-dir "$d" >/dev/null 2>&1
taskset -c 0 "$BIN" serve --data-dir "$d" --listen 127.0.0.1:"$cp" --log-level warn &
(cd bench/peers/node && exec taskset -c 0 env NODE_ENV=production PORT="$np" ALG=RS256 CLIENT_ID=bench \
  CLIENT_SECRET=unused node server.mjs) >/dev/null 2>&1 &
curl -sf --retry 50 --retry-connrefused --retry-delay 0 -o /dev/null "http://127.0.0.1:$cp/.well-known/jwks.json"
curl -sf --retry 50 --retry-connrefused --retry-delay 0 -o /dev/null "http://127.0.0.1:$np/jwks"
C=http://127.0.0.1:$cp/.well-known/jwks.json N=http://127.0.0.1:$np/jwks
rps() { taskset -c 1 wrk -t1 -c32 -d"$1" -s bench/jwks.lua "$2" | grep '^RESULT' | sed -E 's/.*rps=([0-9.]+).*/\1/'; }
rps 5s "$C" >/dev/null; rps 5s "$N" >/dev/null
for i in $(seq 1 "$ROUNDS"); do
  a=$(rps 8s "$C") b=$(rps 8s "$N")
  echo "round $i: castellan $a  oidc-provider $b  ratio $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')"
done
