-- Append one turn to a session's history: O(1), the context document is never rewritten.
-- KEYS[1] context document, KEYS[2] history list, KEYS[3] sessions index,
-- KEYS[4] the session's host (the host id of the daemon that last wrote it)
-- ARGV[1] the turn (JSON), ARGV[2] max turns, ARGV[3] default TTL (s),
-- ARGV[4] the document to create when the session does not exist, ARGV[5] session id,
-- ARGV[6] now (ms), ARGV[7] index entries scored below this are long dead,
-- ARGV[8] this daemon's host id ("": none recorded)
-- Returns {history length, TTL applied, 1 if the session was created} or {-1, length} when full.
local length = redis.call('LLEN', KEYS[2])
if length >= tonumber(ARGV[2]) then return {-1, length} end
local ttl = tonumber(ARGV[3])
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ttl)
  created = 1
else
  -- The service writes every document starting {"sessionId":…,"version":…,"ttl":…, so the
  -- session's own TTL is read from its first bytes, whatever the size of its context.
  local head = redis.call('GETRANGE', KEYS[1], 0, 255)
  local own = string.match(head, '^{"sessionId":"[^"]*","version":%d+,"ttl":(%d+)[,}]')
  if own then ttl = tonumber(own) end
  redis.call('EXPIRE', KEYS[1], ttl)
end
length = redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ttl)
if ARGV[8] ~= '' then redis.call('SET', KEYS[4], ARGV[8], 'EX', ttl) end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[7])
if redis.call('TTL', KEYS[3]) < ttl then redis.call('EXPIRE', KEYS[3], ttl) end
return {length, ttl, created}
