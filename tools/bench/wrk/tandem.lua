-- wrk script for the tandem service benchmark (tools/bench/service.py runs it; one wrk thread).
--   BENCH_ROUTE      recommend | similar | events
--   BENCH_FIRST/LAST raw ids cycled in order from a random start (users for recommend and events, items for similar; an event's
--                    item is the same number, so it must be a catalogue id too)
--   BENCH_K          k of every request
--   BENCH_DELAY_MS   pause of each connection before its next request (0 = closed loop)
-- At the end one line "BENCH_RESULT {json}" carries the counts and latency percentiles (microseconds).

local route = os.getenv("BENCH_ROUTE") or "recommend"
local first = tonumber(os.getenv("BENCH_FIRST") or "1")
local last = tonumber(os.getenv("BENCH_LAST") or "200")
local k = tonumber(os.getenv("BENCH_K") or "20")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local span = last - first + 1
local counter = 0

-- each run starts at a random position, so a run does not revisit the users the previous one just saw
init = function(args)
  math.randomseed(os.time())
  counter = math.random(0, span - 1)
end

request = function()
  local id = first + counter % span
  counter = counter + 1
  if route == "similar" then
    return wrk.format("GET", "/v1/items/" .. id .. "/similar?k=" .. k)
  end
  if route == "events" then
    local event = string.format(
      '{"events": [{"user_id": "%d", "item_id": "%d", "action": "view", "timestamp": %d}]}', id, id, os.time()
    )
    return wrk.format("POST", "/v1/events", { ["Content-Type"] = "application/json" }, event)
  end
  local body = string.format('{"user_id": "%d", "k": %d}', id, k)
  return wrk.format("POST", "/v1/recommend", { ["Content-Type"] = "application/json" }, body)
end

if pause > 0 then
  delay = function()
    return pause
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
