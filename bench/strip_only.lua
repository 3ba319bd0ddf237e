-- What kiali-header-auth does in strip-only mode (no configuration), written as an Envoy Lua
-- filter, for `make bench` to compare the strip-only filter with (a yardstick, not for production):
-- drop every client Impersonate-* header, any letter case, every copy. Nothing else.
-- Like bench/equivalent.lua it keeps no stats, so it is a lower bound for Lua.

local PREFIX = "impersonate-"
local PREFIX_LEN = #PREFIX

function envoy_on_request(handle)
  local headers = handle:headers()
  -- Collect first: the header map cannot change while it is iterated.
  local drop
  for name, _ in pairs(headers) do
    if #name > PREFIX_LEN and string.lower(string.sub(name, 1, PREFIX_LEN)) == PREFIX then
      drop = drop or {}
      drop[#drop + 1] = name
    end
  end
  if drop then
    for i = 1, #drop do
      headers:remove(drop[i])
    end
  end
end
