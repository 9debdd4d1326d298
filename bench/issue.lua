-- wrk script: POST a JSON body to a certificate endpoint. BODY and (optionally) AUTH come from the
-- environment, so the same script drives Castellan's /v1/pki/issue/server and cfssl's newcert.
-- METHOD=GET (no BODY) drives a read such as GET /v1/secrets/{name} (bench/secrets.sh).
wrk.method = os.getenv("METHOD") or "POST"
wrk.body = os.getenv("BODY")
if wrk.body then wrk.headers["Content-Type"] = "application/json" end
local auth = os.getenv("AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d bytes_per_response=%.0f\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.bytes / math.max(summary.requests, 1)))
end
