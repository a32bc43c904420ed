-- Test harness: calls the credagent vault the way Kong's PDK does, `get(conf, resource, version)`,
-- from the phases Kong calls vaults in, and answers what it returned as JSON. The vault needs no
-- part of Kong's PDK, so none is emulated here.

local cjson = require "cjson.safe"
local ffi = require "ffi"
local vault = require "kong.vaults.credagent"
local answer = require "kong.vaults.credagent.answer"

local _M = {}

-- What the calls made outside the content phase returned, by phase and resource.
local phase_results = {}

local function outcome(value, err, ttl)
  return { value = value, err = err, ttl = ttl, phase = ngx.get_phase() }
end

local function record(resource, value, err, ttl)
  local phase = ngx.get_phase()
  phase_results[phase] = phase_results[phase] or {}
  phase_results[phase][resource] = outcome(value, err, ttl)
end


--- Calls the vault for each of the comma-separated `resources` with the socket `socket`.
function _M.call_in_init(socket, resources)
  for resource in string.gmatch(resources, "[^,]+") do
    record(resource, vault.get({ socket = socket }, resource))
  end
end


function _M.phase_results()
  ngx.say(cjson.encode(phase_results))
end


-- The vault's configuration and the resource from the query: what Kong passes to `get`.
local function call_from_query()
  local args = ngx.req.get_uri_args()
  local conf = {
    socket = args.socket,
    timeout = tonumber(args.timeout),
    ttl = tonumber(args.ttl),
    server_uid = tonumber(args.server_uid),
  }
  return conf, args.resource, tonumber(args.version), args
end


function _M.get_from_query()
  local conf, resource, version = call_from_query()
  ngx.say(cjson.encode(outcome(vault.get(conf, resource, version))))
end


--- The call of `get_from_query` in the log phase; what it returned is kept for `phase_results`.
function _M.get_from_query_in_log()
  local conf, resource, version = call_from_query()
  record(resource, vault.get(conf, resource, version))
end


--- The vault's ttl rule on the times in the query (?issued_at=&expires_at=&refresh_at=&now=&cap=):
--- the pure function, without an agent.
function _M.ttl_rule()
  local args = ngx.req.get_uri_args()
  local ttl, err = answer.ttl({ issued_at = args.issued_at, expires_at = args.expires_at, refresh_at = args.refresh_at },
                              tonumber(args.now), tonumber(args.cap))
  ngx.say(cjson.encode({ ttl = ttl, err = err }))
end


ffi.cdef [[
  struct credagent_harness_timespec { long tv_sec; long tv_nsec; };
  int credagent_harness_clock_gettime(int clock, struct credagent_harness_timespec *now) __asm__("clock_gettime");
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("struct credagent_harness_timespec")

local function microseconds()
  ffi.C.credagent_harness_clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end


--- `calls` calls of `get` one after another (the benchmark): calls per second and latency
--- percentiles in microseconds.
function _M.bench()
  local conf, resource, _, args = call_from_query()
  local calls = tonumber(args.calls) or 10000
  local latencies, errors, last_error = {}, 0, nil
  local started = microseconds()
  for i = 1, calls do
    local before = microseconds()
    local value, err = vault.get(conf, resource)
    latencies[i] = microseconds() - before
    if not value then
      errors, last_error = errors + 1, err
    end
  end
  local seconds = (microseconds() - started) / 1e6
  table.sort(latencies)
  local function percentile(p)
    return math.floor(latencies[math.max(1, math.ceil(calls * p))] + 0.5)
  end
  ngx.say(cjson.encode({
    calls = calls, errors = errors, last_error = last_error,
    calls_per_second = math.floor(calls / seconds + 0.5),
    p50_us = percentile(0.5), p99_us = percentile(0.99), p999_us = percentile(0.999),
  }))
end


return _M
