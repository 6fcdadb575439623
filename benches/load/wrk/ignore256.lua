-- Keep-alive POST /ignore with a 256 KiB body (the README's drain limit) the
-- handler never reads.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
wrk.method = "POST"
wrk.path = "/ignore"
wrk.body = string.rep("x", 256 * 1024)
