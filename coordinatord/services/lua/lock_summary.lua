-- How many locks are held in a project, and the first few (soonest lease end first).
-- KEYS[1] the locks index   ARGV[1] most resources to return
-- Returns {count, resource, ...}. Read only: the index's clean-up is lock_list's and the reaper's.
local t = redis.call('TIME')
local now_ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local out = {redis.call('ZCOUNT', KEYS[1], now_ms, '+inf')}
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], now_ms, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
for _, resource in ipairs(rows) do
  out[#out + 1] = resource
end
return out
