-- wrk script: refresh_token grant requests, each with a refresh token no other request has used.
-- Refresh tokens rotate on every use, so the script keeps a pool: SEED names a file of refresh tokens
-- (one per line, at least twice the connections), each request takes one from the pool and each answer
-- puts the new one back. AUTH is the client's Authorization header value. bytes_per_response as token.lua.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local auth = os.getenv("AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

local pool = {}
function init(args)
  for line in io.lines(os.getenv("SEED")) do
    if line ~= "" then pool[#pool + 1] = line end
  end
end

function request()
  local t = table.remove(pool) or "pool-empty"
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. t)
end

function response(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then pool[#pool + 1] = t end
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d bytes_per_response=%.0f\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.bytes / math.max(summary.requests, 1)))
end
