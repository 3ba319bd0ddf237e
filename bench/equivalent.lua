-- What kiali-header-auth does in full impersonation mode with the oauth2-proxy preset, written
-- as an Envoy Lua filter, for `make bench` to compare against (a benchmark yardstick, not for production).
--
--  1. drop every client Impersonate-* header, any letter case, every copy;
--  2. map X-Forwarded-User -> Impersonate-User, X-Forwarded-Groups (split on ',', trimmed, empty
--     and duplicate entries dropped) -> one Impersonate-Group each,
--     X-Forwarded-Email -> Impersonate-Extra-Email; remove the source headers;
--     no user -> 401 JSON;
--  3. Authorization: Bearer <token>, from a token cached in this Lua state (an upvalue) with its
--     expiry checked on every request, like the filter's cache. A real Lua filter would fetch it
--     with httpCall once and refresh it; the bench measures the steady state, where the token is
--     already cached.
--
-- Deliberately NOT done here (the wasm filter does them, so this is a lower bound for Lua):
-- value validation (UTF-8, control characters, lengths, max groups, `system:` identities),
-- duplicate user header detection, stats counters, the access-log filter state.

local TOKEN = "kha-lua-cached-token"
local TOKEN_EXPIRES = os.time() + 3600

local PREFIX = "impersonate-"
local PREFIX_LEN = #PREFIX

local function refuse(handle, status, reason, message)
  handle:respond({
    [":status"] = status,
    ["content-type"] = "application/json",
    ["cache-control"] = "no-store",
    ["x-kiali-header-auth-reason"] = reason,
  }, '{"error": "' .. message .. '", "reason": "' .. reason .. '"}')
end

function envoy_on_request(handle)
  local headers = handle:headers()

  -- 1. Collect first: the header map cannot change while it is iterated.
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

  -- 2. Identity.
  local user = headers:get("x-forwarded-user")
  if user == nil or user == "" then
    refuse(handle, "401", "identity_missing", "the request carries no user identity")
    return
  end
  headers:add("impersonate-user", user)
  local groups = headers:get("x-forwarded-groups")
  if groups ~= nil then
    local seen = {}
    for group in string.gmatch(groups, "[^,]+") do
      group = string.match(group, "^%s*(.-)%s*$")
      if group ~= "" and not seen[group] then
        seen[group] = true
        headers:add("impersonate-group", group)
      end
    end
  end
  local email = headers:get("x-forwarded-email")
  if email ~= nil and email ~= "" then
    headers:add("impersonate-extra-email", email)
  end
  headers:remove("x-forwarded-user")
  headers:remove("x-forwarded-groups")
  headers:remove("x-forwarded-email")

  -- 3. Token.
  if os.time() >= TOKEN_EXPIRES then
    refuse(handle, "503", "token_unavailable", "no usable ServiceAccount token")
    return
  end
  headers:replace("authorization", "Bearer " .. TOKEN)
end
