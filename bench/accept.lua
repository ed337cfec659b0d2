-- wrk script for the accept benchmark: every request carries a distinct, pre-signed x402
-- payment. The header values are read from the file in $BENCH_HEADERS (one per line);
-- thread i of n takes lines i, i+n, i+2n, ... so no payment is sent twice. A thread that
-- runs out of payments wraps around (re-sends are counted in `wrapped` and reported).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_HEADERS")
  local body = os.getenv("BENCH_BODY") or '{"quantity":1}'
  local target = os.getenv("BENCH_PATH")
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local requests = {}
  local i = 0
  for line in io.lines(path) do
    if i % n == id then
      requests[#requests + 1] = wrk.format("POST", target, {
        ["Content-Type"] = "application/json",
        ["PAYMENT-SIGNATURE"] = line,
      }, body)
    end
    i = i + 1
  end
  prepared = requests
  position = 0
  wrapped = 0
end

function request()
  position = position + 1
  if position > #prepared then
    position = 1
    wrapped = wrapped + 1
  end
  return prepared[position]
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "wrapped": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, wraps))
end
