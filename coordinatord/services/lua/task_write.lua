-- Compare-and-set of one task document, and its entry in the tasks index, in one step.
--
-- KEYS[1]  the task document (task:progress:<id>)
-- KEYS[2]  the tasks index (zset: task id -> updatedAt in ms)
-- ARGV[1]  what the caller based its change on: 'absent', or the SHA-1 of the document it read
-- ARGV[2]  the new document (JSON, written as given)
-- ARGV[3]  TTL in seconds, for the document and the index
-- ARGV[4]  index score: the new updatedAt in ms
-- ARGV[5]  the task id (index member)
-- ARGV[6]  index entries scored below this are dropped: their documents have expired
--
-- Returns {1} when written; {0} when the key is absent and the caller expected a document;
-- {0, current} when the document is not the one the caller read, so that the caller can
-- re-apply its change to `current` without another round trip.
--
-- Comparing the whole document rather than its version field also catches a raw redis_set
-- that rewrote the JSON but kept the version (the seed's get-modify-set sample does that).

local current = redis.call('GET', KEYS[1])
local state = 'absent'
if current then
  state = redis.sha1hex(current)
end

if state ~= ARGV[1] then
  if current then
    return {0, current}
  end
  return {0}
end

redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {1}
