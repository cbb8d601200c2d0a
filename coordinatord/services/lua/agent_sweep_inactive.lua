-- One batch of the heartbeat sweep's first step: agents whose last heartbeat is outside the
-- window, and who are not present (no live connection record on any daemon, and no
-- connection open to the sweeping daemon), leave the active index for the inactive one
-- (keeping their heartbeat as score).
-- KEYS[1] the active index   KEYS[2] the inactive index
-- KEYS[3] the presence index (agent -> expiry of its latest connection record, server ms)
-- ARGV[1] score bound for ZRANGEBYSCORE, "(<ms>": heartbeats before it are outside the window
-- ARGV[2] offset into the candidates (the present agents kept by earlier batches)
-- ARGV[3] batch size   ARGV[4] TTL (s) of the inactive index
-- ARGV[5..] agents connected to the sweeping daemon in this project: never made inactive
-- (its own connections count even before their records are written)
-- Returns {candidates read, candidates kept, agent made inactive, ...}
-- Read, presence check and move happen in one script, so a heartbeat is either before it (the
-- agent is no longer a candidate) or after it (the write puts the agent back in the active
-- index), and a record is either live now or not.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '0' then
  -- Once per sweep: the entries of records nobody renewed (a dead daemon's) are dropped.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%d', now_ms))
end
local connected = {}
for i = 5, #ARGV do
  connected[ARGV[i]] = true
end
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])
local out = {0, 0}
local kept = 0
for i = 1, #rows, 2 do
  local agent = rows[i]
  if connected[agent] or tonumber(redis.call('ZSCORE', KEYS[3], agent) or '0') > now_ms then
    kept = kept + 1
  else
    redis.call('ZREM', KEYS[1], agent)
    redis.call('ZADD', KEYS[2], rows[i + 1], agent)
    out[#out + 1] = agent
  end
end
if #out > 2 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
out[1] = #rows / 2
out[2] = kept
return out
