-- Put an archived session back: document, whole history and index entry in one step.
-- KEYS[1] context document, KEYS[2] history list, KEYS[3] sessions index,
-- KEYS[4] the session's host (the host id of the daemon that last wrote it)
-- ARGV[1] "1" to replace a live session, ARGV[2] document, ARGV[3] TTL (s), ARGV[4] session id,
-- ARGV[5] now (ms), ARGV[6] index entries scored below this are long dead,
-- ARGV[7] this daemon's host id ("": none recorded), ARGV[8..] the turns
-- Returns the history length, or -1 when the session is live and ARGV[1] is not "1".
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return -1 end
local ttl = tonumber(ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
-- In slices: unpack() of thousands of values can overflow Lua's C stack.
for first = 8, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call('EXPIRE', KEYS[2], ttl)
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[4], ARGV[7], 'EX', ttl)
else
  redis.call('DEL', KEYS[4])
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6])
if redis.call('TTL', KEYS[3]) < ttl then redis.call('EXPIRE', KEYS[3], ttl) end
return redis.call('LLEN', KEYS[2])
