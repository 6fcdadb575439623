-- GET / with Connection: close: a new connection per request, nothing unread.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
wrk.method = "GET"
wrk.path = "/"
wrk.headers["Connection"] = "close"
