-- One batch of the heartbeat sweep's second step: inactive agents whose last heartbeat is older
-- than the forget horizon are marked gone (with the server time, which lock times also use)
-- and their status is removed.
-- KEYS[1] the inactive index   KEYS[2] the gone index   KEYS[3] the agents index
-- KEYS[4] the active index     KEYS[4 + i] the status document of ARGV[2 + i]
-- ARGV[1] cutoff (ms): heartbeats before it are past the forget horizon
-- ARGV[2] how long (s) a gone mark is kept (its TTL, and the age past which marks are dropped)
-- ARGV[3..] candidate agents (read from the inactive index, connected ones left out)
-- Returns {agent marked gone, ...}
-- An agent that wrote since it was read is no longer in the inactive index (every write takes
-- it out), so the check and the removal here cannot act on a newer heartbeat.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep_ms = tonumber(ARGV[2]) * 1000
local cutoff = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now_ms - keep_ms))
local gone = {}
for i = 3, #ARGV do
  local agent = ARGV[i]
  local beat = redis.call('ZSCORE', KEYS[1], agent)
  if beat and tonumber(beat) < cutoff then
    redis.call('ZREM', KEYS[1], agent)
    redis.call('ZADD', KEYS[2], string.format('%d', now_ms), agent)
    redis.call('DEL', KEYS[2 + i])
    redis.call('ZREM', KEYS[3], agent)
    redis.call('ZREM', KEYS[4], agent)
    gone[#gone + 1] = agent
  end
end
if #gone > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return gone
