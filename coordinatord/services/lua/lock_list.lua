-- The resources whose lease has not ended, by the locks index; drops entries long past.
-- KEYS[1] locks index
-- ARGV[1] most entries to return  ARGV[2] grace (ms) before a past entry is dropped
-- Returns {resource, resource, ...} (at most ARGV[1]), soonest lease end first
local index = KEYS[1]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. string.format('%d', now_ms - tonumber(ARGV[2])))
return redis.call('ZRANGEBYSCORE', index, string.format('%d', now_ms), '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
