-- What every scenario script shares (loaded with dofile): its share of the data file, each item
-- once or in turn, the answers counted by status, its own clock, and `done` printing one JSON line.
--
-- Environment: BENCH_DATA (a file, one item a line, fields separated by tabs), BENCH_THREADS (wrk's
-- -t), BENCH_MODE ("once": each item once, the thread stops when its share is answered; "cycle":
-- round and round), BENCH_DONE_DIR (where a thread done with its share says so), BENCH_EXPECTED
-- (the statuses the scenario expects; a few answers of any other are kept as samples). Thread i
-- takes lines i, i + threads, ... so concurrent requests rarely share a patient when the file is
-- ordered by patient in turn.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")

function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

local mode = os.getenv("BENCH_MODE") or "cycle"
local expected = {}
for status in (os.getenv("BENCH_EXPECTED") or ""):gmatch("%d+") do
  expected[tonumber(status)] = true
end
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

-- Per thread (each wrk thread runs its own copy of this script).
items, cursor, reserved, outstanding = {}, 0, 0, 0
statuses, ops, exhausted = {}, 0, false
samples = {} -- the first few answers of a status outside BENCH_EXPECTED: "status body"
first_us, last_us = 0, 0
op_latencies = {} -- microseconds, for scripts timing an operation of several requests

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    fields[#fields + 1] = field
  end
  return fields
end

function init(args)
  local count, n = tonumber(os.getenv("BENCH_THREADS")), 0
  local path = os.getenv("BENCH_DATA")
  if path and path ~= "" then
    for line in io.lines(path) do
      if n % count == index and line ~= "" then
        items[#items + 1] = split(line)
      end
      n = n + 1
    end
  end
end

-- The next item of this thread's share, or nil: a "once" item is taken only under a
-- reservation made by delay(), which wrk asks before every request of a connection; without one
-- this is wrk checking the script before the run (it calls request() once), and the caller
-- answers filler(), never sent.
function take()
  if mode == "once" then
    if reserved == 0 then
      return nil
    end
    reserved = reserved - 1
    cursor = cursor + 1
    return items[cursor]
  end
  if #items == 0 then
    return nil
  end
  cursor = cursor % #items + 1
  return items[cursor]
end

local function finished()
  return exhausted and outstanding == 0 and reserved == 0
end

-- A thread done with its share says so in BENCH_DONE_DIR (the runner ends wrk once all are),
-- then stops.
local function stop()
  local dir = os.getenv("BENCH_DONE_DIR")
  if dir and dir ~= "" then
    io.open(dir .. "/thread-" .. index, "w"):close()
  end
  wrk.thread:stop()
end

if mode == "once" then
  -- A connection finding nothing left to reserve waits for ever; the thread stops once every
  -- request it sent is answered.
  function delay()
    if cursor + reserved < #items then
      reserved = reserved + 1
      return 0
    end
    exhausted = true
    if finished() then
      stop()
    end
    return 1000000000
  end
end

local FILLER_ID = "bench-filler-00"

-- Not counted: its answer is ignored.
function filler()
  return wrk.format("GET", "/health/live", { ["X-Request-ID"] = FILLER_ID })
end

function sent()
  if first_us == 0 then
    first_us = now_us()
  end
  outstanding = outstanding + 1
end

-- Scripts define on_response(status, headers, body) -> true when the answer completes an
-- operation; by default every 2xx does.
function on_response(status, headers, body)
  return status >= 200 and status < 300
end

function response(status, headers, body)
  if (headers["x-request-id"] or headers["X-Request-ID"]) == FILLER_ID then
    return
  end
  outstanding = outstanding - 1
  last_us = now_us()
  statuses[status] = (statuses[status] or 0) + 1
  if not expected[status] and #samples < 3 then
    samples[#samples + 1] = status .. " " .. string.sub(body or "", 1, 300)
  end
  if on_response(status, headers, body) then
    ops = ops + 1
  end
  if finished() then
    stop()
  end
end

local function encode(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    for k, v in pairs(value) do
      parts[#parts + 1] = encode(tostring(k)) .. ":" .. encode(v)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "string" then
    local escaped = value:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
    end)
    return '"' .. escaped .. '"'
  elseif kind == "boolean" then
    return tostring(value)
  elseif value == nil or value ~= value then
    return "null"
  end
  return string.format("%.17g", value)
end

local function percentiles(values)
  if #values == 0 then
    return nil
  end
  table.sort(values)
  local function at(p)
    return values[math.max(1, math.min(#values, math.ceil(#values * p / 100)))]
  end
  return { p50 = at(50), p95 = at(95), p99 = at(99), max = values[#values] }
end

function done(summary, latency, requests)
  local out = {
    requests = summary.requests,
    duration_us = summary.duration,
    errors = summary.errors,
    latency_us = {
      p50 = latency:percentile(50),
      p95 = latency:percentile(95),
      p99 = latency:percentile(99),
      max = latency.max,
    },
    statuses = {},
    ops = 0,
    exhausted = false,
    samples = {},
  }
  local first, last, lat = nil, 0, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      local key = tostring(status)
      out.statuses[key] = (out.statuses[key] or 0) + n
    end
    out.ops = out.ops + thread:get("ops")
    for _, sample in ipairs(thread:get("samples")) do
      out.samples[#out.samples + 1] = sample
    end
    out.exhausted = out.exhausted or thread:get("exhausted")
    local began, ended = thread:get("first_us"), thread:get("last_us")
    if began > 0 and (first == nil or began < first) then
      first = began
    end
    last = math.max(last, ended)
    for _, v in ipairs(thread:get("op_latencies")) do
      lat[#lat + 1] = v
    end
  end
  out.active_us = first and (last - first) or 0
  out.op_latency_us = percentiles(lat)
  io.write("BENCH_RESULT " .. encode(out) .. "\n")
end
