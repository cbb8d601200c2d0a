-- task_claim: the caller becomes the task's claimant if the task is ready; exactly one of many
-- concurrent callers wins, since the check and the claim are this one script.
-- KEYS[1] the task's graph hash   KEYS[2] the ready index   KEYS[3] the caller's claims set
-- KEYS[4] the agents sweep's active index   KEYS[5] its inactive index
-- ARGV[1] task id   ARGV[2] agent   ARGV[3] ready-by-label prefix   ARGV[4] TTL (s) of the claims set
-- ARGV[5] now (ms, the daemon's clock, which follows the backend's TIME, as heartbeats score)
-- ARGV[6] TTL (s) of the active index
-- Returns {1, 'claimed'}, {1, 'again'} (the caller already held it), or {0, reason, detail...}:
-- 'missing', 'held' (claimant), 'completed', 'waiting' (dependencies left, the dependencies).
-- The claim records the server time (claimed_ms), which the heartbeat sweep compares with the
-- moment it found the claimant gone. A claimant the sweep does not know (it never heartbeated)
-- is put in the active index, so that its claims lapse when it goes quiet like anyone's.
local hash = KEYS[1]
if redis.call('EXISTS', hash) == 0 then
  return {0, 'missing'}
end
local left, done, by, deps = unpack(redis.call('HMGET', hash, 'left', 'done', 'claimed_by', 'deps'))
if by and by ~= '' then
  if by == ARGV[2] then
    return {1, 'again'}
  end
  return {0, 'held', by}
end
if done == '1' then
  return {0, 'completed'}
end
if left ~= '0' then
  return {0, 'waiting', left or '0', deps or ''}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', hash, 'claimed_by', ARGV[2], 'claimed_ms', string.format('%d', now_ms))
graph_ready_remove(KEYS[2], ARGV[3], ARGV[1], hash)
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[4])
if not redis.call('ZSCORE', KEYS[4], ARGV[2]) and not redis.call('ZSCORE', KEYS[5], ARGV[2]) then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
  if redis.call('TTL', KEYS[4]) < 0 then
    redis.call('EXPIRE', KEYS[4], ARGV[6])
  end
end
return {1, 'claimed'}
