-- wrk script for `make bench`: the request every variant sees.
--
-- Every request carries what an authenticating proxy (oauth2-proxy) puts on it, plus what a
-- hostile client might add: a spoofed Impersonate-User and its own Authorization.
-- The bench driver (harness/src/bin/bench.rs) reads the `wrk.headers[...]` lines below to send
-- the same request in its equivalence check, so keep one header per line in this form.

wrk.method = "GET"
wrk.path = "/api/namespaces"
wrk.headers["X-Forwarded-User"] = "alice"
wrk.headers["X-Forwarded-Groups"] = "dev, ops ,kiali-viewers"
wrk.headers["X-Forwarded-Email"] = "alice@example.com"
wrk.headers["Impersonate-User"] = "admin"
wrk.headers["Authorization"] = "Bearer client-chosen-token"

-- One machine-readable line with exact numbers (latencies in microseconds), parsed by the driver.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "KHA_BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max, latency.mean,
    e.status, e.connect, e.read, e.write, e.timeout))
end
