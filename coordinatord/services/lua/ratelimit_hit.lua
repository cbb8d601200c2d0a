-- One hit on a sliding-window log: admit `cost` units if the window has room, else nothing.
-- KEYS[1] ratelimit:{service}:{window_s} (zset: one member per admitted unit, scored by µs)
-- KEYS[2] the service's window set
-- ARGV[1] limit  ARGV[2] window (s)  ARGV[3] cost  ARGV[4] id unique to this hit
-- Returns {admitted (0/1), units in the window afterwards, deciding unit's score (µs), now (µs)}.
-- The deciding unit is, when admitted, the oldest one (its leaving frees the next unit); when
-- refused, the one whose leaving makes room for `cost`. Scores are integers below 2^53, exact
-- as doubles; they are passed to redis.call through string.format, never as Lua numbers (which
-- would be printed with 14 digits).
local log, windows = KEYS[1], KEYS[2]
local limit, window_s, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window_us = window_s * 1000000

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = string.format('%d', now_us)

-- A unit admitted exactly one window ago has left: windows are half-open, (now - w, now].
redis.call('ZREMRANGEBYSCORE', log, '-inf', string.format('%d', now_us - window_us))
local used = redis.call('ZCARD', log)

if used + cost > limit then
  local rank = used + cost - limit - 1
  local deciding = redis.call('ZRANGE', log, rank, rank, 'WITHSCORES')
  return {0, used, deciding[2], now}
end

local batch = {}
for i = 1, cost do
  batch[#batch + 1] = now
  batch[#batch + 1] = ARGV[4] .. ':' .. i
  -- unpack() has a bounded stack; add in chunks.
  if #batch >= 1000 or i == cost then
    redis.call('ZADD', log, unpack(batch))
    batch = {}
  end
end
local window_ms = window_s * 1000
redis.call('PEXPIRE', log, window_ms)
redis.call('SADD', windows, ARGV[2])
if redis.call('PTTL', windows) < window_ms then
  redis.call('PEXPIRE', windows, window_ms)
end
local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
return {1, used + cost, oldest[2], now}
