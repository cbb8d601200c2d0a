-- Set a held lock's lease to end `lease` ms from now, only for the token that holds it.
-- KEYS[1] lock:{resource}   KEYS[2] locks index
-- ARGV[1] token  ARGV[2] resource  ARGV[3] lease (ms)
-- ARGV[4] prefix of the per-agent sets of held resources: the holder's set is this + its name
--         (only known once the lock is read; it shares the project's hash tag, so one slot)
-- Returns {renewed (0/1), reason, holder, remaining lease (ms; -2: free, -1: no expiry), fencing}
local lock, index = KEYS[1], KEYS[2]
local lease = tonumber(ARGV[3])
local exists, held, holder = read_lock(lock)
if not exists then
  -- A lapsed lease cannot be renewed: another agent may have taken and released it meanwhile.
  redis.call('ZREM', index, ARGV[2])
  return {0, 'not_held', '', -2, ''}
end
if not (held and held.token == ARGV[1]) then
  return {0, 'token_mismatch', holder, redis.call('PTTL', lock), ''}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('PEXPIRE', lock, lease)
redis.call('ZADD', index, string.format('%d', now_ms + lease), ARGV[2])
for _, key in ipairs({index, ARGV[4] .. tostring(held.agent or '')}) do
  if redis.call('PTTL', key) < lease then
    redis.call('PEXPIRE', key, lease)
  end
end
return {1, 'renewed', tostring(held.agent or ''), lease, string.format('%d', tonumber(held.fencing) or 0)}
