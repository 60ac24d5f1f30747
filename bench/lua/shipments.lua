-- POST /orders/{id}/shipments by an admin, each request a different paid order (bench/seed.py seeds them).
-- wrk -s shipments.lua URL -- ORDERS_FILE THREADS RUN_ID ADMIN_TOKEN [START]
--   ORDERS_FILE: one order id per line; thread t takes lines i with i % THREADS == t. A thread that
--                used up its orders starts over (those requests find nothing left to ship: 409,
--                counted as "reused"; the bench sizes the pool so that it does not).
--   START: where in its orders a thread begins.
-- The body ships every unit (no items); every request carries a unique Idempotency-Key.
local counter = 0
threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  run_id = args[3]
  auth = "Bearer " .. args[4]
  orders = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      orders[#orders + 1] = "/orders/" .. line .. "/shipments"
    end
    i = i + 1
  end
  pos = #orders > 0 and (tonumber(args[5] or "0") % #orders) or 0
  sent = 0
  reused = 0
  statuses = {}
end

function request()
  pos = pos + 1
  if pos > #orders then
    pos = 1
  end
  if sent >= #orders then
    reused = reused + 1
  end
  sent = sent + 1
  return wrk.format("POST", orders[pos], {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run_id .. "-" .. tid .. "-" .. sent,
  }, '{"carrier": "UPS", "trackingNumber": "1Z999AA10123456784"}')
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
