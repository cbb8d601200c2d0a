-- One batch of the heartbeat sweep's second step: inactive agents whose last heartbeat is older
-- than the forget horizon, and who are not present (no live connection record on any daemon),
-- are marked gone (with the server time, which lock times also use) and their status is removed.
-- KEYS[1] the inactive index   KEYS[2] the gone index   KEYS[3] the agents index
-- KEYS[4] the active index     KEYS[5] the presence index (agent -> latest record expiry, ms)
-- KEYS[5 + i] the status document of ARGV[2 + i]
-- ARGV[1] cutoff (ms): heartbeats before it are past the forget horizon
-- ARGV[2] how long (s) a gone mark is kept (its TTL, and the age past which marks are dropped)
-- ARGV[3..] candidate agents (read from the inactive index, those connected to the sweeping
-- daemon left out)
-- Returns {candidates kept because present, agent marked gone, ...}
-- An agent that wrote since it was read is no longer in the inactive index (every write takes
-- it out), so the check and the removal here cannot act on a newer heartbeat; a connection
-- record is live or not at this one moment.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep_ms = tonumber(ARGV[2]) * 1000
local cutoff = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now_ms - keep_ms))
local out = {0}
local gone = 0
for i = 3, #ARGV do
  local agent = ARGV[i]
  local beat = redis.call('ZSCORE', KEYS[1], agent)
  if beat and tonumber(beat) < cutoff then
    if tonumber(redis.call('ZSCORE', KEYS[5], agent) or '0') > now_ms then
      out[1] = out[1] + 1
    else
      redis.call('ZREM', KEYS[1], agent)
      redis.call('ZADD', KEYS[2], string.format('%d', now_ms), agent)
      redis.call('DEL', KEYS[3 + i])
      redis.call('ZREM', KEYS[3], agent)
      redis.call('ZREM', KEYS[4], agent)
      out[#out + 1] = agent
      gone = gone + 1
    end
  end
end
if gone > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return out
