-- QR codes issued and decoded: one operation is a patient's GET of a code and a terminal's POST
-- decoding it. Each thread keeps a queue: an issued code's answer queues its payload; the next
-- request decodes one if any is queued, else issues the next patient's code (BENCH_DATA: one
-- patient's token a line; the thread's patients taken in turn, so a patient's newer code never
-- voids one still queued). BENCH_TERMINAL_TOKEN: the terminal's token. The operation is timed
-- from its issue to its decode's answer, matched by the X-Request-ID that medpay echoes.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local terminal = "Bearer " .. os.getenv("BENCH_TERMINAL_TOKEN")
local queue, head, seq, started = {}, 1, 0, {}

function request()
  sent()
  if head <= #queue then
    local code = queue[head]
    queue[head] = nil
    head = head + 1
    local headers = {
      Authorization = terminal,
      ["Content-Type"] = "application/json",
      ["X-Request-ID"] = "bench-d-" .. code.k,
    }
    return wrk.format("POST", "/api/v1/partner/ecert/decode", headers, '{"qr":"' .. code.payload .. '"}')
  end
  local patient = take()
  seq = seq + 1
  started[seq] = now_us()
  local headers = { Authorization = "Bearer " .. patient[1], ["X-Request-ID"] = "bench-i-" .. seq }
  return wrk.format("GET", "/api/v1/ecert/qrcode", headers)
end

function on_response(status, headers, body)
  local id = headers["x-request-id"] or headers["X-Request-ID"] or ""
  local kind, k = id:match("^bench%-(%a)%-(%d+)$")
  k = tonumber(k)
  if kind == "i" then
    local payload = status == 200 and body:match('"payload"%s*:%s*"([^"]+)"')
    if payload then
      queue[#queue + 1] = { k = k, payload = payload }
    else
      started[k] = nil
    end
    return false
  end
  if kind == "d" and status == 200 and started[k] then
    op_latencies[#op_latencies + 1] = now_us() - started[k]
    started[k] = nil
    return true
  end
  return false
end
