-- Compare-and-set of a session's context document; refreshes both keys' TTL and the index.
-- KEYS[1] context document, KEYS[2] history list, KEYS[3] sessions index,
-- KEYS[4] the session's host (the host id of the daemon that last wrote it)
-- ARGV[1] SHA-1 of the document the new one was computed from ("" = it must not exist)
-- ARGV[2] new document, ARGV[3] TTL in seconds, ARGV[4] session id,
-- ARGV[5] now (ms, the index score), ARGV[6] index entries scored below this are long dead,
-- ARGV[7] this daemon's host id ("": none recorded)
-- Returns the TTL applied, or -1 when the document changed since it was read.
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return -1 end
elseif not current or redis.sha1hex(current) ~= ARGV[1] then
  return -1
end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('EXPIRE', KEYS[2], ttl)
if ARGV[7] ~= '' then redis.call('SET', KEYS[4], ARGV[7], 'EX', ttl) end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6])
if redis.call('TTL', KEYS[3]) < ttl then redis.call('EXPIRE', KEYS[3], ttl) end
return ttl
