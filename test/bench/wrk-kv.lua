-- One wrk script for every benchmark request shape, flotilla's and etcd's, so both systems are
-- loaded by the same generator with the same keys and values.
--
--   wrk -t2 -c64 -d10s --latency -s test/bench/wrk-kv.lua http://127.0.0.1:PORT -- MODE [VALUE_BYTES] [KEYS] [PREFIX]
--
-- MODE:
--   flotilla-put        PUT /v1/kv/KEY with a raw VALUE_BYTES body
--   flotilla-get        GET /v1/kv/KEY (linearizable, the default)
--   flotilla-get-stale  GET /v1/kv/KEY?consistency=stale
--   etcd-put            POST /v3/kv/put {"key":b64,"value":b64} (etcd's HTTP/JSON gateway)
--   etcd-get            POST /v3/kv/range {"key":b64} (linearizable, etcd's default)
--   etcd-get-serializable  POST /v3/kv/range {"key":b64,"serializable":true}
--   bare-put            PUT /v1/kv/KEY to the bare Fastify reference server
--   bare-get            GET /v1/kv/KEY?consistency=stale to the bare node:http reference server
--   flotilla-load       PUT unique keys PREFIX<thread>-<n>, KEYS of them in all (split over the
--                       THREADS, a fifth argument), then GET /health until wrk is stopped: used
--                       to fill a store
-- KEYS: random keys are chosen uniformly out of KEYS (default 10000), named key00000..key09999.
--
-- done() prints one machine-readable line, "WRK_JSON {...}", with exact percentiles (in µs).

local mode = "flotilla-put"
local valueBytes = 100
local keyCount = 10000
local prefix = "key"

local requests = {}   -- prebuilt request strings, one per key (random modes)
local loadQuota = 0   -- flotilla-load: keys this thread still has to write
local loadNext = 0
local loadValue = ""
local healthRequest = nil
local verified = false

-- Thread numbering: setup() runs in the main Lua state once per thread, before init().
local threadCount = 0
function setup(thread)
  threadCount = threadCount + 1
  thread:set("id", threadCount)
end

-- A value of printable pseudo-random bytes from a fixed seed: the same bytes for both systems,
-- and not trivially compressible (LevelDB compresses its tables with Snappy; etcd does not).
local function makeValue(n)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local parts = {}
  local x = 12345
  local chunk = {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    local c = math.floor(x / 65536) % 64 + 1
    chunk[#chunk + 1] = alphabet:sub(c, c)
    if #chunk == 4096 then parts[#parts + 1] = table.concat(chunk); chunk = {} end
  end
  parts[#parts + 1] = table.concat(chunk)
  return table.concat(parts)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64chars = {}
for i = 1, 64 do b64chars[i - 1] = B64:sub(i, i) end

local function base64(s)
  local out = {}
  local n = #s
  local i = 1
  while i + 2 <= n do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + b * 256 + c
    out[#out + 1] = b64chars[math.floor(v / 262144) % 64] .. b64chars[math.floor(v / 4096) % 64]
      .. b64chars[math.floor(v / 64) % 64] .. b64chars[v % 64]
    i = i + 3
  end
  local rest = n - i + 1
  if rest == 1 then
    local v = s:byte(i) * 65536
    out[#out + 1] = b64chars[math.floor(v / 262144) % 64] .. b64chars[math.floor(v / 4096) % 64] .. "=="
  elseif rest == 2 then
    local a, b = s:byte(i, i + 1)
    local v = a * 65536 + b * 256
    out[#out + 1] = b64chars[math.floor(v / 262144) % 64] .. b64chars[math.floor(v / 4096) % 64]
      .. b64chars[math.floor(v / 64) % 64] .. "="
  end
  return table.concat(out)
end

local function keyName(i)
  return string.format("%s%05d", prefix, i)
end

function init(args)
  mode = args[1] or mode
  valueBytes = tonumber(args[2] or valueBytes)
  keyCount = tonumber(args[3] or keyCount)
  prefix = args[4] or prefix
  math.randomseed(os.time() * 1000 + id * 7919)
  local value = makeValue(valueBytes)

  if mode == "flotilla-load" then
    local threads = tonumber(args[5] or "1")
    -- Thread `id` writes its share of keyCount unique keys.
    loadQuota = math.floor(keyCount / threads) + ((id <= keyCount % threads) and 1 or 0)
    loadValue = value
    healthRequest = wrk.format("GET", "/health")
    return
  end

  -- Requests are prebuilt per key, so the generator spends its time sending, not formatting;
  -- except for large values (10,000 prebuilt 1 MiB requests would not fit): those are formatted
  -- per request from prebuilt parts.
  local json = { ["Content-Type"] = "application/json" }
  local octets = { ["Content-Type"] = "application/octet-stream" }
  local valueB64 = nil
  if mode == "etcd-put" then valueB64 = base64(value) end
  local prebuild = valueBytes <= 16384
  for i = 0, keyCount - 1 do
    local key = keyName(i)
    local r
    if mode == "flotilla-put" or mode == "bare-put" then
      r = prebuild and wrk.format("PUT", "/v1/kv/" .. key, octets, value) or { "/v1/kv/" .. key }
    elseif mode == "flotilla-get" then
      r = wrk.format("GET", "/v1/kv/" .. key)
    elseif mode == "flotilla-get-stale" or mode == "bare-get" then
      r = wrk.format("GET", "/v1/kv/" .. key .. "?consistency=stale")
    elseif mode == "etcd-put" then
      local head = '{"key":"' .. base64(key) .. '","value":"'
      r = prebuild and wrk.format("POST", "/v3/kv/put", json, head .. valueB64 .. '"}') or { head }
    elseif mode == "etcd-get" then
      r = wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. base64(key) .. '"}')
    elseif mode == "etcd-get-serializable" then
      r = wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. base64(key) .. '","serializable":true}')
    else
      error("unknown mode " .. mode)
    end
    requests[i] = r
  end
  if not prebuild then
    -- Per-request formatting for large values (only the put modes have a body).
    local lazy = requests
    requests = setmetatable({}, { __index = function(_, i)
      local part = lazy[i]
      if type(part) == "string" then return part end
      if mode == "etcd-put" then return wrk.format("POST", "/v3/kv/put", json, part[1] .. valueB64 .. '"}') end
      return wrk.format("PUT", part[1], octets, value)
    end })
  end
end

function request()
  if mode == "flotilla-load" then
    -- wrk calls request() once in the first thread's state to check it, and never sends that
    -- one: hand it a throwaway so no key of the quota is lost.
    if id == 1 and not verified then
      verified = true
      return healthRequest
    end
    if loadNext >= loadQuota then return healthRequest end
    local key = string.format("%s%d-%07d", prefix, id, loadNext)
    loadNext = loadNext + 1
    return wrk.format("PUT", "/v1/kv/" .. key, nil, loadValue)
  end
  return requests[math.random(0, keyCount - 1)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latencyUs":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
