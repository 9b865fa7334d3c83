-- Requests written out beforehand, one a line: METHOD, PATH, BODY, then "Name: value" headers,
-- separated by tabs (bills paid, pre-settled, paid by credit; bank callbacks; bookings; ...).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

function request()
  local item = take()
  if item == nil then
    return filler()
  end
  sent()
  local headers = {}
  for i = 4, #item do
    local name, value = item[i]:match("^([^:]+):%s*(.*)$")
    if name then
      headers[name] = value
    end
  end
  local body = item[3]
  if body == "" then
    body = nil
  end
  return wrk.format(item[1], item[2], headers, body)
end
