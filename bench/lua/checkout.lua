-- POST /orders, each request a different user's pre-filled cart (bench/seed.py fills them).
-- wrk -s checkout.lua URL -- USERS_FILE THREADS RUN_ID MODE [START]
--   USERS_FILE: lines "userId<TAB>cartId<TAB>accessToken"; thread t takes lines i with i % THREADS == t.
--   MODE "measure": a thread that used up its users starts over (those requests meet an empty cart:
--                   422, counted as errors and as "reused"; the bench sizes the pool so it does not).
--   MODE "burst":   each user once; a thread that is done sends GET /healthz (not counted) until
--                   the bench, which watches the database, stops wrk.
--   START: where in its users a thread begins (the bench moves it on every run, so that a request
--          still finishing after the previous run cannot empty a cart this run is about to use).
-- Every request carries a unique Idempotency-Key, so the idempotency path runs as in production.
local counter = 0
threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  run_id, mode = args[3], args[4]
  users = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local uid, cid, tok = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
      users[#users + 1] = {
        body = '{"userId": "' .. uid .. '", "cartId": "' .. cid .. '"}',
        auth = "Bearer " .. tok,
      }
    end
    i = i + 1
  end
  pos = #users > 0 and (tonumber(args[5] or "0") % #users) or 0
  sent = 0
  reused = 0
  statuses = {}
end

function request()
  pos = pos + 1
  if pos > #users then
    if mode == "burst" then
      return wrk.format("GET", "/healthz")
    end
    pos = 1
  end
  if sent >= #users then
    reused = reused + 1
  end
  sent = sent + 1
  local u = users[pos]
  return wrk.format("POST", "/orders", {
    ["Authorization"] = u.auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run_id .. "-" .. tid .. "-" .. sent,
  }, u.body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
