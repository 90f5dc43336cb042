-- Runs an Argo CD health script the way Argo CD runs a resource.customizations.health
-- script (util/lua/lua.go): a global `obj`, the base, table and os libraries only (no
-- string, math, io or debug library, no string methods), the returned table checked
-- for a valid health status and a string message.
--
--   lua5.4 argocd_harness.lua HEALTH_SCRIPT OBJECT_FILE
--
-- OBJECT_FILE holds one Lua table constructor (tests/gitops/lua.py writes it, every
-- string as decimal escapes); it is loaded as text with an empty environment, so it
-- can only build data. Output: the status, a NUL byte, the message. Exit 2 when the
-- script fails or returns what Argo CD would reject.

local script_path, object_path = arg[1], arg[2]

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function fail(message)
  io.stderr:write(message, "\n")
  os.exit(2)
end

local build, err = load("return " .. slurp(object_path), "=object", "t", {})
if build == nil then
  fail("object: " .. err)
end
local obj = build()

local sandbox = {}
for _, name in ipairs({
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print", "rawequal",
  "rawget", "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type",
  "xpcall",
}) do
  sandbox[name] = _G[name]
end
sandbox.table = { concat = table.concat, insert = table.insert, remove = table.remove,
  sort = table.sort, unpack = table.unpack }
sandbox.unpack = table.unpack -- Lua 5.1's base library has it
sandbox.os = { time = os.time, date = os.date, clock = os.clock, difftime = os.difftime }
sandbox._G = sandbox
sandbox.obj = obj

local script, serr = load(slurp(script_path), "=health.lua", "t", sandbox)
if script == nil then
  fail("script: " .. serr)
end

-- no string library in the sandbox: string values have no methods either
local string_meta = getmetatable("")
local string_index = string_meta.__index
string_meta.__index = nil
local ok, hs = pcall(script)
string_meta.__index = string_index
if not ok then
  fail("script error: " .. tostring(hs))
end

local valid = { Healthy = true, Progressing = true, Degraded = true, Suspended = true,
  Missing = true, Unknown = true }
if type(hs) ~= "table" then
  fail("expect table output from Lua script, not " .. type(hs))
end
if not valid[hs.status] then
  fail("Lua returned an invalid health status: " .. tostring(hs.status))
end
if hs.message ~= nil and type(hs.message) ~= "string" then
  fail("message is a " .. type(hs.message) .. ", not a string")
end
io.stdout:write(hs.status, "\0", hs.message or "")
