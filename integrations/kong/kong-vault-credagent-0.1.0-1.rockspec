-- The credagent vault for Kong (OSS and Enterprise). From a checkout of the repository:
--   cd integrations/kong && luarocks make kong-vault-credagent-0.1.0-1.rockspec
-- then `vaults = bundled,credagent` in kong.conf (docs/KONG.md). `luarocks pack kong-vault-credagent`
-- afterwards makes a .all.rock to install in a Kong image with `luarocks install FILE`.
package = "kong-vault-credagent"
version = "0.1.0-1"
source = {
  -- Built from the checkout it sits in (luarocks make reads no source).
  url = "file://.",
}
description = {
  license = "as the credagent repository",
  summary = "Kong vault that reads short-lived cloud credentials from the credagent sidecar",
  detailed = [[
    References such as {vault://credagent/orders-db/password} resolve to the credential the local
    credagent agent serves over its Unix socket, with a ttl that ends before the agent stops
    serving that secret. The agent's process is checked with SO_PEERCRED.
  ]],
}
dependencies = {
  "lua >= 5.1",
}
build = {
  type = "builtin",
  modules = {
    ["kong.vaults.credagent"] = "kong/vaults/credagent/init.lua",
    ["kong.vaults.credagent.schema"] = "kong/vaults/credagent/schema.lua",
    ["kong.vaults.credagent.answer"] = "kong/vaults/credagent/answer.lua",
    ["kong.vaults.credagent.socket"] = "kong/vaults/credagent/socket.lua",
  },
}
