-- Tidings benchmark workloads for wrk (src/tidings/bench/wrk.py runs it; see bench/README.md).
--
--   wrk -t1 -c64 -d30s -s mix.lua http://127.0.0.1:PORT/ -- DATA_FILE MODE [SEED]
--
-- DATA_FILE (written by tidings.bench.workload.Workload.write), one record per line:
--   U <users> <prefix>    targets <prefix>1 .. <prefix><users> (timelines, follows)
--   T <token> <username>  an access token of a seeded sign-in session
--   P <post id>           a recent public post (like targets)
-- MODE: mix (60 % home feed, 30 % a user's timeline, 7 % compose, 2 % like, 1 % follow), one
-- endpoint alone (feed, timeline, compose, like, follow), or a baseline path (json, pk). SEED
-- (default 1) with the thread number seeds the PRNG: the same seed, the same request sequence.
--
-- wrk's own latency statistics are aggregate. Per endpoint, every request carries
-- X-Request-ID: <thread>.<seq> (the API and the baseline echo it); request() notes the label and
-- a monotonic start time (LuaJIT FFI clock_gettime) under that id, response() looks the echoed id
-- up and records the latency (microseconds) and the status under the label: non-2xx is an error.
-- request() runs right before wrk writes the request and response() right after it parsed the
-- response, so the figure is what wrk itself measures, per label. done() (main Lua state) copies
-- each thread's tables and writes them to $TIDINGS_WRK_OUT for Python to summarise.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } tidings_timespec;
int clock_gettime(int clk_id, tidings_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("tidings_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000000 + tonumber(timespec.tv_nsec) / 1000
end

local LABELS = { "feed", "timeline", "compose", "like", "follow", "json", "pk" }
local MIX = { { "feed", 60 }, { "timeline", 30 }, { "compose", 7 }, { "like", 2 }, { "follow", 1 } }

-- main state ------------------------------------------------------------------------------------

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function done(summary, latency, requests)
  local out = assert(io.open(assert(os.getenv("TIDINGS_WRK_OUT")), "w"))
  for _, thread in ipairs(threads) do
    for _, label in ipairs(LABELS) do
      local values = thread:get("lat_" .. label)
      if values and #values > 0 then
        out:write("L ", label, " ", table.concat(values, " "), "\n")
      end
      local errors = thread:get("err_" .. label)
      if errors and errors > 0 then
        out:write("E ", label, " ", errors, "\n")
      end
      local sample = thread:get("sample_" .. label)
      if sample and sample ~= "" then
        out:write("S ", label, " ", (string.gsub(sample, "%s", " ")), "\n")
      end
    end
    out:write("X unmatched ", thread:get("unmatched") or 0, "\n")
    for _, label in ipairs(LABELS) do
      local n = thread:get("inflight_" .. label)
      if n and n > 0 then
        out:write("I ", label, " ", n, "\n")
      end
    end
  end
  local e = summary.errors
  out:write(string.format("W %d %d %d %d %d %d %d\n", summary.duration, summary.requests,
    e.connect, e.read, e.write, e.status, e.timeout))
  out:close()
end

-- thread states ---------------------------------------------------------------------------------

local tokens, names, posts, pool = {}, {}, {}, {}
local users, prefix, seq = 0, "bu", 0
local pending, started = {}, {}

function init(args)
  local path, mode, seed = args[1], args[2], tonumber(args[3] or "1")
  for line in io.lines(path) do
    local kind, a, b = string.match(line, "^(%u) (%S+) ?(%S*)$")
    if kind == "U" then
      users, prefix = tonumber(a), b
    elseif kind == "T" then
      tokens[#tokens + 1] = a
      names[#names + 1] = b
    elseif kind == "P" then
      posts[#posts + 1] = a
    end
  end
  if mode == "mix" then
    for _, entry in ipairs(MIX) do
      for _ = 1, entry[2] do
        pool[#pool + 1] = entry[1]
      end
    end
  else
    pool[1] = mode
  end
  for _, label in ipairs(LABELS) do
    _G["lat_" .. label] = {}
    _G["err_" .. label] = 0
    _G["sample_" .. label] = ""
    _G["inflight_" .. label] = 0 -- sent, no response yet (numbers only: thread:get copies them)
  end
  unmatched = 0
  math.randomseed(seed * 1000 + (tid or 1)) -- the run's seed: a sequence of its own per run
end

function request()
  seq = seq + 1
  local rid = (tid or 1) .. "." .. seq
  local label = pool[math.random(#pool)]
  local method, path, body = "GET", nil, nil
  local headers = { ["X-Request-ID"] = rid }
  if label == "json" or label == "pk" then
    path = "/" .. label
  else
    local i = math.random(#tokens)
    headers["Authorization"] = "Bearer " .. tokens[i]
    if label == "compose" then
      method, path, body = "POST", "/api/v1/posts",
        string.format('{"text":"bench post #tag%d"}', math.random(0, 49))
      headers["Content-Type"] = "application/json"
    elseif label == "like" and #posts > 0 then
      method, path, body = "PUT", "/api/v1/posts/" .. posts[math.random(#posts)] .. "/like", ""
    elseif label == "follow" then
      local n = math.random(1, users)
      if prefix .. n == names[i] then -- following yourself is a 422: the next account instead
        n = n % users + 1
      end
      method, path, body = "PUT", "/api/v1/users/" .. prefix .. n .. "/follow", ""
    elseif label == "timeline" then
      path = "/api/v1/users/" .. prefix .. math.random(1, users) .. "/posts?limit=20"
    else
      label, path = "feed", "/api/v1/feed?limit=20"
    end
  end
  pending[rid] = label
  started[rid] = now_us()
  if not (tid == 1 and seq == 1) then -- wrk calls request() once to inspect it, never sent
    _G["inflight_" .. label] = _G["inflight_" .. label] + 1
  end
  return wrk.format(method, path, headers, body)
end

function response(status, headers, body)
  local finished = now_us()
  local rid = headers["x-request-id"] or headers["X-Request-ID"]
  local label = rid and pending[rid]
  if not label then
    unmatched = unmatched + 1
    return
  end
  local values = _G["lat_" .. label]
  values[#values + 1] = math.floor(finished - started[rid] + 0.5)
  pending[rid], started[rid] = nil, nil
  _G["inflight_" .. label] = _G["inflight_" .. label] - 1
  if status < 200 or status > 299 then
    _G["err_" .. label] = _G["err_" .. label] + 1
    if _G["sample_" .. label] == "" then
      _G["sample_" .. label] = status .. " " .. string.sub(body or "", 1, 600)
    end
  end
end
