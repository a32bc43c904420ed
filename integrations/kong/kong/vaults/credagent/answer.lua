-- The pure part of the credagent vault: which resources are credential names, how the agent's
-- HTTP answer reads, whose process may answer, and how long Kong may keep a value. No I/O: the
-- caller passes the time and the uids.

local cjson = require("cjson.safe").new()

local decode = cjson.decode
local find = string.find
local match = string.match
local gmatch = string.gmatch
local lower = string.lower
local sub = string.sub
local byte = string.byte
local fmt = string.format
local floor = math.floor
local min = math.min
local max = math.max
local type = type
local tonumber = tonumber


local _M = {}

-- What the agent's config accepts as `credentials[].name`.
_M.NAME_RULE = "[a-z0-9][a-z0-9._-]{0,62}"

-- The agent stops serving a secret this long (at most) before it expires: min(15 s, lifetime / 4).
local SERVING_MARGIN = 15

local OPENING_BRACE = byte("{")

-- How much of an agent's error message an error of the vault carries.
local MESSAGE_LIMIT = 300


--- Whether `resource` names a credential: `[a-z0-9][a-z0-9._-]{0,62}`.
function _M.is_credential_name(resource)
  return type(resource) == "string" and #resource <= 63
     and find(resource, "^[a-z0-9][a-z0-9._-]*$") ~= nil
end


--- The status and the headers (lower-case names) of a response head: the status line and
--- header lines, without the blank line that ends them. Nil and a reason when it is no HTTP head.
function _M.parse_head(head)
  local status = match(head, "^HTTP/1%.[01] (%d%d%d)")
  if not status then
    return nil, "no HTTP status line"
  end
  local headers = {}
  for name, value in gmatch(head, "\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    headers[lower(name)] = value
  end
  return tonumber(status), headers
end


--- The body's length from the headers of a response, or nil and a reason.
function _M.content_length(headers)
  local length = tonumber(headers["content-length"])
  if not length or length < 0 or length ~= floor(length) then
    return nil, "a response without Content-Length"
  end
  return length
end


--- Whether a server whose process runs as `peer_uid` may hand this process credentials: root,
--- this process's own uid, or the configured `server_uid`.
function _M.peer_allowed(peer_uid, own_uid, server_uid)
  return peer_uid == 0 or peer_uid == own_uid or (server_uid ~= nil and peer_uid == server_uid)
end


--- Seconds since the epoch of a timestamp as the agent writes them ("2026-11-22T10:15:00Z",
--- fractions allowed), or nil.
local function epoch_seconds(text)
  local y, m, d, hh, mm, ss, fraction = match(text, "^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)(%.?%d*)Z$")
  if not y then
    return nil
  end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  -- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
  if m <= 2 then
    y = y - 1
  end
  local era = floor(y / 400)
  local year_of_era = y - era * 400
  local day_of_year = floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local day_of_era = year_of_era * 365 + floor(year_of_era / 4) - floor(year_of_era / 100) + day_of_year
  local days = era * 146097 + day_of_era - 719468
  return days * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss) + (tonumber("0" .. fraction) or 0)
end


-- The last few timestamps read: a credential's times stay the same until it rotates.
local recent_times = {}
local recent_count = 0

local function epoch_seconds_cached(text)
  local seconds = recent_times[text]
  if not seconds then
    seconds = epoch_seconds(text)
    if recent_count >= 64 then
      recent_times, recent_count = {}, 0
    end
    recent_times[text], recent_count = seconds, recent_count + 1
  end
  return seconds
end


--- The string value of the top-level field `name` of the agent's credential JSON, or nil when it
--- is absent or null. The agent writes no spaces between a key and its value, and a JSON string
--- holds no bare quote, so `"name":"` can only start that field.
local function string_field(body, name)
  local key = '"' .. name .. '":"'
  local start = find(body, key, 1, true)
  if not start then
    return nil
  end
  local value_start = start + #key
  local value_end = find(body, '"', value_start, true)
  return value_end and sub(body, value_start, value_end - 1)
end


--- How long (whole seconds, at least 1) Kong may keep a credential served at `now`: until the
--- agent's planned refresh (`refresh_at`), never past the end of the window in which the agent
--- serves it (`expires_at` - min(15 s, lifetime / 4)), and at most `cap` seconds. `times` holds
--- the credential's `issued_at`, `expires_at` and `refresh_at` as the agent wrote them (each may
--- be nil). Nil and a reason when a time is unreadable.
function _M.ttl(times, now, cap)
  local ttl = cap
  if times.expires_at then
    local expires = epoch_seconds_cached(times.expires_at)
    if not expires then
      return nil, "an expires_at this vault cannot read"
    end
    local issued = times.issued_at and epoch_seconds_cached(times.issued_at)
    local margin = issued and min(SERVING_MARGIN, (expires - issued) / 4) or SERVING_MARGIN
    ttl = min(ttl, expires - margin - now)
  end
  if times.refresh_at then
    local refresh = epoch_seconds_cached(times.refresh_at)
    if not refresh then
      return nil, "a refresh_at this vault cannot read"
    end
    -- Past when the agent's refresh is late or failing: ask again soon.
    ttl = min(ttl, refresh - now)
  end
  -- Kong reads a ttl of 0 or less as "keep forever".
  return max(1, floor(ttl))
end


-- The code and message of an error body, the message bounded.
local function error_detail(body)
  local object = decode(body)
  local detail = type(object) == "table" and object.error
  if type(detail) ~= "table" then
    return "no error code", "no error detail"
  end
  local message = type(detail.message) == "string" and detail.message or "no error detail"
  if #message > MESSAGE_LIMIT then
    message = sub(message, 1, MESSAGE_LIMIT) .. "..."
  end
  return type(detail.code) == "string" and detail.code or "no error code", message
end


--- What Kong's `get` answers for the agent's response to `GET /v1/credentials/{resource}`: the
--- JSON body and its ttl, or nil and an error that says what to do. `context` holds `socket`
--- (the path, for messages), `own_uid`, `ttl` (the cap) and `now`.
function _M.result(resource, status, headers, body, context)
  if status == 200 then
    if byte(body, 1) ~= OPENING_BRACE then
      return nil, fmt("credagent: the agent on %s sent a credential that is not a JSON object", context.socket)
    end
    -- Kong decodes the body to pick the reference's field; reading the times needs no decoding.
    local times = {
      issued_at = string_field(body, "issued_at"),
      expires_at = string_field(body, "expires_at"),
      refresh_at = string_field(body, "refresh_at"),
    }
    local ttl, err = _M.ttl(times, context.now, context.ttl)
    if not ttl then
      return nil, fmt("credagent: the agent on %s sent %s for '%s'", context.socket, err, resource)
    end
    return body, nil, ttl
  end

  local code, message = error_detail(body)
  if status == 403 then
    return nil, fmt("credagent: the agent on %s does not let uid %d read '%s' (403 %s); add that uid "
                    .. "to socket.allow.uids (or its group to socket.allow.gids) in the agent's config",
                    context.socket, context.own_uid, resource, code)
  elseif status == 404 then
    return nil, fmt("credagent: the agent on %s has no credential named '%s' (404 %s); a reference "
                    .. "names one of the agent's credentials: {vault://credagent/NAME/FIELD}",
                    context.socket, resource, code)
  elseif status == 503 then
    return nil, fmt("credagent: '%s' has no servable secret at the moment (503 %s: %s); the agent "
                    .. "tries again in %s s (Retry-After)",
                    resource, code, message, headers["retry-after"] or "?")
  end
  return nil, fmt("credagent: the agent on %s answered %d for '%s' (%s: %s)",
                  context.socket, status, resource, code, message)
end


return _M
