-- task_unclaim: only the claimant may give a claim up; the task is ready again if it can be.
-- KEYS[1] the task's graph hash   KEYS[2] the ready index   KEYS[3] the caller's claims set
-- ARGV[1] task id   ARGV[2] agent   ARGV[3] ready-by-label prefix   ARGV[4] TTL (s) of the ready keys
-- Returns {1, 1 if now ready else 0} or {0, reason, detail}: 'missing', 'unclaimed', 'held' (claimant).
local hash = KEYS[1]
if redis.call('EXISTS', hash) == 0 then
  return {0, 'missing'}
end
local by = redis.call('HGET', hash, 'claimed_by')
if not by or by == '' then
  return {0, 'unclaimed'}
end
if by ~= ARGV[2] then
  return {0, 'held', by}
end
redis.call('HSET', hash, 'claimed_by', '')
redis.call('HDEL', hash, 'claimed_ms')
redis.call('SREM', KEYS[3], ARGV[1])
local became = {}
if graph_is_ready(hash) then
  graph_ready_add(KEYS[2], ARGV[3], ARGV[4], ARGV[1], hash, became)
end
return {1, #became}
