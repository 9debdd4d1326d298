-- wrk script: password sign-ins on Castellan's login page (POST /signin), each a full argon2id
-- verification, a new session and an authorization code (answer: 303 to the app).
-- CSRF: the value of the CSRF cookie and form field (the double-submit pair one GET of the login page
-- gave); REQUEST: the authorization request the form carries; USER, PASSWORD.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local csrf = os.getenv("CSRF")
wrk.headers["Cookie"] = "castellan_csrf=" .. csrf
local function enc(s) return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end)) end
wrk.body = "csrf=" .. enc(csrf) .. "&request=" .. enc(os.getenv("REQUEST")) .. "&username=" .. enc(os.getenv("USER_NAME"))
  .. "&password=" .. enc(os.getenv("PASSWORD"))

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d bytes_per_response=%.0f\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.bytes / math.max(summary.requests, 1)))
end
