-- Read-only: what a hit of cost 1 would see now, admitting and removing nothing.
-- KEYS[1] ratelimit:{service}:{window_s}
-- ARGV[1] limit  ARGV[2] window (s)
-- Returns {room for one more (0/1), units in the window, deciding unit's score (µs) or '', now (µs)}
-- (the deciding unit as in ratelimit_hit.lua, for a cost of 1).
local log = KEYS[1]
local limit, window_us = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000000
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local since = '(' .. string.format('%d', now_us - window_us)
local used = redis.call('ZCOUNT', log, since, '+inf')
local allowed, rank = 1, 0
if used + 1 > limit then
  allowed, rank = 0, used - limit
end
local deciding = ''
if used > 0 then
  deciding = redis.call('ZRANGEBYSCORE', log, since, '+inf', 'WITHSCORES', 'LIMIT', rank, 1)[2]
end
return {allowed, used, deciding, string.format('%d', now_us)}
