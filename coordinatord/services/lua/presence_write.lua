-- Write some of one daemon's connection records in one project: add or renew (expiry = server
-- now + TTL), or remove; then bring the agents' entries in the presence index to the expiry of
-- their latest live record (any daemon's), and drop what has expired.
-- KEYS[1] the presence index (agent -> latest expiry, server ms)
-- KEYS[1 + i] the record set of the agent of op i (record -> expiry, server ms)
-- ARGV[1] TTL (ms)   then per op i: ARGV[2 + 3(i-1)] '+' (add/renew) or '-' (remove),
-- ARGV[3 + 3(i-1)] the agent, ARGV[4 + 3(i-1)] the record
-- Returns the server time (ms) the expiries were computed from.
-- Server time, not the daemon's: every daemon's records and every sweep use one clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local touched = {}
for i = 2, #KEYS do
  local base = 2 + 3 * (i - 2)
  local op, agent, record = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  if op == '+' then
    redis.call('ZADD', KEYS[i], string.format('%d', expiry), record)
  else
    redis.call('ZREM', KEYS[i], record)
  end
  touched[KEYS[i]] = agent
end
local stale = '(' .. string.format('%d', now)
for key, agent in pairs(touched) do
  -- A dead daemon's records in this set end here; a set nobody writes expires with its latest.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', stale)
  local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  if #top == 0 then
    redis.call('ZREM', KEYS[1], agent)
  else
    redis.call('ZADD', KEYS[1], top[2], agent)
    redis.call('PEXPIRE', key, math.max(1, tonumber(top[2]) - now))
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stale)
local latest = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #latest > 0 then
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(latest[2]) - now))
end
return now
