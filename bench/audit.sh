#!/usr/bin/env bash
# The audit trail's cost (issue 22), auditing off beside on, in the same run: two servers on one store
# (`[audit] enabled = false`, and the default: the store, fail-closed), each pinned to CPU 0 in turn,
# wrk (-t1) on CPU 1; rounds alternate off/on so a busy machine weighs on both alike.
#   - tokens/s: client_credentials (client_secret_basic), ES256; target on/off ≥ 0.95. Tokens are
#     counted per client per interval (one event per client every audit.token_interval), so the token
#     path takes one map update under a lock.
#   - secret reads/s: GET /v1/secrets/{name} (a 64-byte value); target on/off ≥ 0.8. Each read waits
#     until its event is committed (fail-closed), in batches with the other reads in flight.
# Afterwards `castellan audit verify` must pass on the trail the load wrote.
#
# usage: bench/audit.sh [RUNS] [DURATION] [--no-build]   env: BIN (a castellan binary), CONNS (32)
#        STRICT=1 makes a missed target an exit status 1.   needs: wrk, jq, curl, taskset
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-8}
CONNS=${CONNS:-32}
if [ "${3:-}" != "--no-build" ] && [ -z "${BIN:-}" ]; then cargo build --release -q -p castellan; fi
BIN=${BIN:-$PWD/target/release/castellan}
mkdir -p bench/results
OUT=bench/results/audit-$(date -u +%Y-%m-%dT%H%M).json
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
d="$work/data"
"$BIN" init --data-dir "$d" --alg ES256 >/dev/null 2>&1
"$BIN" client create bench --scope secrets:read --scope secrets:write --data-dir "$d" --json > "$work/cred.json"
id=$(jq -r .client_id "$work/cred.json"); secret=$(jq -r .client_secret "$work/cred.json")
basic="Basic $(printf '%s:%s' "$id" "$secret" | base64 -w0)"
printf '[audit]\nenabled = false\n' > "$work/off.toml"
printf '[audit]\nmode = "fail-closed"\n' > "$work/on.toml"
value=$(head -c 48 /dev/urandom | base64 -w0)

pid= port=
start() { # off|on → sets port and pid (not in a subshell: the server must be this shell's child)
  port=$((19500 + RANDOM % 400))
  taskset -c 0 "$BIN" serve --config "$work/$1.toml" --data-dir "$d" --replica-id "bench-$1" \
    --listen 127.0.0.1:$port --log-level warn >/dev/null 2>>"$work/serve.log" & pid=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$port/readyz" && return 0; sleep 0.1; done
  echo "the server did not start: $(tail -5 "$work/serve.log")" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
field() { sed -E "s/.*$1=([0-9.]+).*/\\1/"; }
check() { grep -q 'non2xx=0 errors=0' <<<"$1" || { echo "errors under load: $1" >&2; exit 1; }; echo "$1"; }
tokens() { # port seconds
  check "$(AUTH="$basic" taskset -c 1 wrk -t1 -c"$CONNS" -d"$2" -s bench/token.lua "http://127.0.0.1:$1/oauth2/token" | grep '^RESULT')"
}
reads() { # port seconds
  local tok
  tok=$(curl -sf -H "Authorization: $basic" -d grant_type=client_credentials "http://127.0.0.1:$1/oauth2/token" | jq -r .access_token)
  check "$(METHOD=GET AUTH="Bearer $tok" taskset -c 1 wrk -t1 -c"$CONNS" -d"$2" -s bench/issue.lua "http://127.0.0.1:$1/v1/secrets/bench/value" | grep '^RESULT')"
}

# The value, written once (through the audited server).
start on
tok=$(curl -sf -H "Authorization: $basic" -d grant_type=client_credentials "http://127.0.0.1:$port/oauth2/token" | jq -r .access_token)
curl -sf -X PUT -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -d "{\"value\":\"$value\"}" "http://127.0.0.1:$port/v1/secrets/bench/value" >/dev/null
stop

: > "$work/rounds"
for i in $(seq 1 "$RUNS"); do
  for mode in off on; do
    start "$mode"
    tokens "$port" 1s >/dev/null
    t=$(tokens "$port" "${DURATION}s")
    reads "$port" 1s >/dev/null
    r=$(reads "$port" "${DURATION}s")
    stop
    echo "round $i audit $mode: tokens $(field rps <<<"$t")/s, secret reads $(field rps <<<"$r")/s"
    echo "$mode $(field rps <<<"$t") $(field rps <<<"$r")" >> "$work/rounds"
  done
done
"$BIN" audit verify --data-dir "$d" > "$work/verify.txt" || { cat "$work/verify.txt" >&2; echo "audit verify failed" >&2; exit 1; }
tail -1 "$work/verify.txt"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
t_off=$(awk '$1=="off"{print $2}' "$work/rounds" | median); t_on=$(awk '$1=="on"{print $2}' "$work/rounds" | median)
r_off=$(awk '$1=="off"{print $3}' "$work/rounds" | median); r_on=$(awk '$1=="on"{print $3}' "$work/rounds" | median)
tr=$(awk -v a="$t_on" -v b="$t_off" 'BEGIN{printf "%.3f", a/b}'); rr=$(awk -v a="$r_on" -v b="$r_off" 'BEGIN{printf "%.3f", a/b}')
met=$(awk -v t="$tr" -v r="$rr" 'BEGIN{print (t >= 0.95 && r >= 0.8) ? "true" : "false"}')
echo "| audit | off | on | on/off | target |"
echo "|---|---|---|---|---|"
echo "| tokens/s (ES256, client_secret_basic) | $t_off | $t_on | $tr | ≥ 0.95 |"
echo "| secret reads/s (GET /v1/secrets, fail-closed) | $r_off | $r_on | $rr | ≥ 0.8 |"
jq -n --arg date "$(date -u +%FT%TZ)" --arg cmd "bench/audit.sh $RUNS $DURATION" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson t_off "$t_off" --argjson t_on "$t_on" --argjson r_off "$r_off" --argjson r_on "$r_on" \
  --argjson tr "$tr" --argjson rr "$rr" --argjson met "$met" --argjson conns "$CONNS" \
  '{date:$date, command:$cmd, load_average_end:$load, conns:$conns, load:"wrk -t1 on CPU 1; server on CPU 0",
    medians:{tokens_off:$t_off, tokens_on:$t_on, reads_off:$r_off, reads_on:$r_on},
    ratios:{tokens:$tr, secret_reads:$rr}, targets:{tokens:0.95, secret_reads:0.8}, targets_met:$met}' > "$OUT"
echo "wrote $OUT"
if [ "${STRICT:-0}" = 1 ] && [ "$met" != true ]; then exit 1; fi
