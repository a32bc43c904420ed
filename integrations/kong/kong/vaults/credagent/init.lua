-- A Kong vault that reads credentials from credagent, the local agent that holds short-lived
-- cloud credentials and serves them over a Unix socket:
--
--   pg_password = {vault://credagent/orders-db/password}
--
-- `get` asks the agent for `GET /v1/credentials/{resource}` and answers its JSON body (Kong picks
-- the field the reference names) with a ttl that ends before the agent stops serving that secret.
-- See docs/KONG.md.

local answer = require "kong.vaults.credagent.answer"
local agent_socket = require "kong.vaults.credagent.socket"
local schema = require "kong.vaults.credagent.schema"

local fmt = string.format
local tostring = tostring
local now = ngx.now


local VERSION = "0.1.0"

-- The schema's defaults, for a `conf` that lacks a field (Kong fills them in itself).
local DEFAULTS = {}
for _, field in ipairs(schema.fields[1].config.fields) do
  local name, definition = next(field)
  DEFAULTS[name] = definition.default
end

local REQUEST = "GET /v1/credentials/%s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kong-vault-credagent/"
                .. VERSION .. "\r\n\r\n"


--- The credential `resource` as the agent serves it (a JSON string), or nil and an error; then
--- the seconds Kong may keep it.
local function get(conf, resource, version)
  if not answer.is_credential_name(resource) then
    return nil, fmt("credagent: '%s' is not a credential name (%s); a reference reads "
                    .. "{vault://credagent/NAME/FIELD}, e.g. {vault://credagent/orders-db/password}",
                    tostring(resource), answer.NAME_RULE)
  end
  if version ~= nil then
    return nil, fmt("credagent: the agent serves only the current secret of '%s'; remove '#%s' "
                    .. "from the reference", resource, tostring(version))
  end

  local socket = conf.socket or DEFAULTS.socket
  local status, headers, body = agent_socket.exchange(socket, fmt(REQUEST, resource),
                                                      conf.timeout or DEFAULTS.timeout, conf.server_uid)
  if not status then
    return nil, headers
  end
  return answer.result(resource, status, headers, body, {
    socket = socket,
    own_uid = agent_socket.own_uid(),
    ttl = conf.ttl or DEFAULTS.ttl,
    now = now(),
  })
end


return {
  VERSION = VERSION,
  get = get,
}
