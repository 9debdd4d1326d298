-- wrk script: POST /v1/clients with a new name each request (ROUND keeps rounds apart), admin bearer
-- token from AUTH. Used by bench/scale.sh.
local counter = 0
local round = os.getenv("ROUND") or "0"
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local body = string.format('{"name":"s%s-%s-%d","scopes":["bench"]}', round, tid or 0, counter)
  return wrk.format("POST", "/v1/clients",
    {["Content-Type"] = "application/json", ["Authorization"] = os.getenv("AUTH")}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests))
end
