-- Release a lock, only for the token that holds it.
-- KEYS[1] lock:{resource}   KEYS[2] locks index
-- ARGV[1] token  ARGV[2] resource
-- ARGV[3] prefix of the per-agent sets of held resources: the holder's set is this + its name
--         (only known once the lock is read; it shares the project's hash tag, so one slot)
-- Returns {released (0/1), reason, holder, remaining lease (ms; -2: free, -1: no expiry)}
local lock, index = KEYS[1], KEYS[2]
local exists, held, holder = read_lock(lock)
if not exists then
  -- Nothing holds it, so no acquisition can race this removal of a stale index entry.
  redis.call('ZREM', index, ARGV[2])
  return {0, 'not_held', '', -2}
end
if not (held and held.token == ARGV[1]) then
  return {0, 'token_mismatch', holder, redis.call('PTTL', lock)}
end
redis.call('DEL', lock)
redis.call('ZREM', index, ARGV[2])
redis.call('SREM', ARGV[3] .. tostring(held.agent or ''), ARGV[2])
return {1, 'released', tostring(held.agent or ''), -2}
