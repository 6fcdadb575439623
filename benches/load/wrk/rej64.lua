-- POST /reject with a 64 KiB body and Connection: close: the handler answers
-- 413 without reading, and every request ends its connection with a body
-- left unread (issue 14's closing path).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
wrk.method = "POST"
wrk.path = "/reject"
wrk.body = string.rep("x", 64 * 1024)
wrk.headers["Connection"] = "close"
