-- wrk script for bench/run.py.
-- Environment: BENCH_METHOD (default POST), BENCH_BODY (path of a file whose
-- bytes are the body, optional), BENCH_CTYPE (Content-Type, optional).
-- At the end it prints one line "BENCH_RESULT {json}".  "status" counts
-- responses >= 400 (wrk's own count); no response() hook is defined, since one
-- would make wrk parse every answer in Lua and slow the client down.  run.py
-- checks answers for correctness before and after the load instead.

local method = os.getenv("BENCH_METHOD") or ""
if method == "" then method = "POST" end
local body_path = os.getenv("BENCH_BODY") or ""
local ctype = os.getenv("BENCH_CTYPE") or ""

wrk.method = method
if body_path ~= "" then
  local f = assert(io.open(body_path, "rb"))
  wrk.body = f:read("*a")
  f:close()
elseif method == "POST" or method == "PUT" then
  wrk.headers["Content-Length"] = "0"
end
if ctype ~= "" then wrk.headers["Content-Type"] = ctype end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"status":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
