-- Keep-alive POST /ignore with a 64 KiB body the handler never reads.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
wrk.method = "POST"
wrk.path = "/ignore"
wrk.body = string.rep("x", 64 * 1024)
