-- Read-only: how many units each of several window logs holds now (for coordinatord top).
-- KEYS[i] ratelimit:{service}:{window_s}   ARGV[i] that log's window (s)
-- Returns {used_1, used_2, ...}, counted over (now - window, now] as ratelimit_status.lua does.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, log in ipairs(KEYS) do
  local since = '(' .. string.format('%d', now_us - tonumber(ARGV[i]) * 1000000)
  out[i] = redis.call('ZCOUNT', log, since, '+inf')
end
return out
