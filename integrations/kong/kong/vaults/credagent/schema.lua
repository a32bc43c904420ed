-- The configuration of the credagent vault: in kong.conf as `vault_credagent_<field>` (or
-- KONG_VAULT_CREDAGENT_<FIELD>), on a vault entity as `config.<field>`, or in a reference's query
-- (`{vault://credagent/orders-db/password?timeout=500}`).
--
-- Plain field definitions (no Kong modules required), so that the vault itself can read the
-- defaults from here.

-- Kong's largest ttl (constants.DATABASE.DAO_MAX_TTL).
local MAX_TTL = 1e8

local function seconds(description)
  return { type = "number", between = { 0, MAX_TTL }, description = description }
end

return {
  name = "credagent",
  fields = {
    {
      config = {
        type = "record",
        fields = {
          { socket = {
              type = "string", required = true, default = "/run/credagent/agent.sock",
              match = "^/", len_max = 107,
              description = "Absolute path of the credagent socket.",
          } },
          { timeout = {
              type = "integer", required = true, default = 2000, between = { 1, 60000 },
              description = "Milliseconds to wait for the agent: connecting, sending and reading.",
          } },
          { server_uid = {
              type = "integer", between = { 0, 4294967294 },
              description = "The uid the agent runs as when it is neither root nor Kong's own user. "
                         .. "Any other process answering on the socket is refused.",
          } },
          -- Kong reads `ttl` for values that come without one (those `kong start` resolved
          -- from kong.conf); the vault returns no ttl longer than it.
          { ttl = {
              type = "number", required = true, default = 60, between = { 1, MAX_TTL },
              description = "Longest time in seconds Kong keeps a value before asking the agent "
                         .. "again; shorter when the credential's refresh or serving window is nearer.",
          } },
          { neg_ttl = seconds("Seconds Kong keeps a failed lookup before trying again (Kong's minimum applies).") },
          { resurrect_ttl = seconds("Seconds Kong keeps using the last value when the agent cannot be asked.") },
        },
      },
    },
  },
}
