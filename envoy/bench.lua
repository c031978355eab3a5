-- wrk script of envoy/bench.sh: GET /bench with `Authorization: Bearer <token>` (or the cookie
-- $BENCH_COOKIE=<token>), rotating
-- through the tokens in $BENCH_TOKENS (one a line), starting after index $BENCH_START (so
-- successive runs continue the rotation instead of replaying tokens a cache still holds).
-- The requests are formatted once, up front: wrk's own cost is the same for one token or many.
-- At the end it prints one line, `BENCH {json}`, that bench.py reads (latencies in µs).

local reqs = {}
local n = 0
local i = 0

-- In init, not at load: wrk sets the Host header (wrk.headers) just before it calls init.
init = function(args)
  -- BENCH_COOKIE: send each line as that cookie instead (the session cookie configs).
  local cookie = os.getenv("BENCH_COOKIE")
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if #line > 0 then
      if cookie then
        reqs[#reqs + 1] = wrk.format("GET", "/bench", { ["Cookie"] = cookie .. "=" .. line })
      else
        reqs[#reqs + 1] = wrk.format("GET", "/bench", { ["Authorization"] = "Bearer " .. line })
      end
    end
  end
  n = #reqs
  i = (tonumber(os.getenv("BENCH_START") or "0") or 0) % n
end

request = function()
  i = i + 1
  if i > n then
    i = 1
  end
  return reqs[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
