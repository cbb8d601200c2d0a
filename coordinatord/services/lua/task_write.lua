-- Compare-and-set of one task document, and its entry in the tasks index, in one step.
--
-- KEYS[1]  the task document (task:progress:<id>)
-- KEYS[2]  the tasks index (zset: task id -> updatedAt in ms)
-- ARGV[1]  the state the caller read: 'absent', 'invalid', or the document's version ("7")
-- ARGV[2]  the new document (JSON, written as given)
-- ARGV[3]  TTL in seconds, for the document and the index
-- ARGV[4]  index score: the new updatedAt in ms
-- ARGV[5]  the task id (index member)
-- ARGV[6]  index entries scored below this are dropped: their documents have expired
--
-- Returns {1, state} when written, {0, state} when the stored state was not ARGV[1].
-- The state is computed exactly as coordinatord.services.tasks.stored_state computes it.

local current = redis.call('GET', KEYS[1])
local state
if not current then
  state = 'absent'
else
  local ok, doc = pcall(cjson.decode, current)
  if not ok or type(doc) ~= 'table' then
    state = 'invalid'
  else
    local version = doc['version']
    if version == nil then
      state = '0'
    elseif type(version) == 'number' and version >= 0 and version < 2^53
        and version == math.floor(version) then
      state = string.format('%d', version)
    else
      state = 'invalid'
    end
  end
end

if state ~= ARGV[1] then
  return {0, state}
end

redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {1, state}
