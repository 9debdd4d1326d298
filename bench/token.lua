-- wrk script: client_credentials token requests with client_secret_basic.
-- The Authorization header value comes from the AUTH environment variable; the form from BODY
-- (default grant_type=client_credentials; bench/run adds scope and resource for the peers).
-- bytes_per_response (headers included) lets the caller check that the answers under load are the
-- size of the one it verified (e.g. JWTs, not opaque tokens).
wrk.method = "POST"
local body = os.getenv("BODY")
wrk.body = (body and body ~= "") and body or "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
-- No AUTH (or an empty one): no Authorization header (a client assertion in the body instead).
local auth = os.getenv("AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d bytes_per_response=%.0f\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.bytes / math.max(summary.requests, 1)))
end
