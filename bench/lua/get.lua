-- GET requests from a list: wrk -s get.lua URL -- PATHS_FILE THREADS
--   PATHS_FILE: lines "path<TAB>accessToken" (token may be "-" for none); thread t cycles through
--   the lines i with i % THREADS == t.
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
      local p, tok = line:match("^([^\t]+)\t([^\t]+)$")
      local headers = {}
      if tok ~= "-" then
        headers["Authorization"] = "Bearer " .. tok
      end
      reqs[#reqs + 1] = wrk.format("GET", p, headers)
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
  end
  return reqs[pos]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
