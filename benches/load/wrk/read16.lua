-- Keep-alive POST /read with a 16 KiB body that the handler reads whole
-- before it answers: nothing goes wrong, nothing is left to drain.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
wrk.method = "POST"
wrk.path = "/read"
wrk.body = string.rep("x", 16 * 1024)
