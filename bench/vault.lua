-- wrk script: GET with either a Bearer token (AUTH, the native API) or an X-Vault-Token (VAULT_TOKEN,
-- the Vault-shaped API), for bench/vault.sh.
wrk.method = os.getenv("METHOD") or "GET"
local auth = os.getenv("AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
local vt = os.getenv("VAULT_TOKEN")
if vt and vt ~= "" then wrk.headers["X-Vault-Token"] = vt end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d bytes_per_response=%.0f\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.bytes / math.max(summary.requests, 1)))
end
