-- Signed POSTs from a list: wrk -s post_signed.lua URL -- FILE THREADS
--   FILE: lines "path<TAB>Stripe-Signature<TAB>body"; thread t sends the lines i with
--   i % THREADS == t, each once, then cycles (a repeat is a duplicate event id: 200, no effect).
local counter = 0
threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  reqs = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local p, sig, body = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
      local headers = {}
      headers["Stripe-Signature"] = sig
      headers["Content-Type"] = "application/json"
      reqs[#reqs + 1] = wrk.format("POST", p, headers, body)
    end
    i = i + 1
  end
  pos = 0
  reused = 0
  statuses = {}
end

function request()
  pos = pos + 1
  if pos > #reqs then
    pos = 1
    reused = reused + 1
  end
  return reqs[pos]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
