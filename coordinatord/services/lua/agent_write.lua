-- Write one agent's status document and its entry in the agents index, in one step.
-- Fields not given keep their stored value, so a heartbeat racing a register of the same agent
-- (two editors under one name) loses neither's fields.
--
-- KEYS[1]  the status document (agent:status:<agent>)
-- KEYS[2]  the agents index (zset: agent -> last heartbeat in ms)
-- KEYS[3]  the active index (zset: agents the heartbeat sweep counts active -> last heartbeat ms)
-- KEYS[4]  the inactive index and KEYS[5] the gone index of the sweep: a write takes the agent
--          out of both, so a sweep acting on an older heartbeat finds nothing to act on
-- ARGV[1]  agent name
-- ARGV[2]  now, ISO 8601 (lastHeartbeat; startedAt when set or when first registered)
-- ARGV[3]  index score: now in ms
-- ARGV[4]  TTL in seconds, for the document and the index
-- ARGV[5]  index entries scored below this are dropped: their documents have expired
-- ARGV[6]  '1': startedAt := now (a register); '0': keep it
-- then for mode, capabilities, currentTask, filesOpen, a pair each:
--   ARGV[n]  '1': set to ARGV[n+1], a JSON fragment built by the caller; '0': keep the stored value
-- ARGV[7..8] mode   ARGV[9..10] capabilities   ARGV[11..12] currentTask   ARGV[13..14] filesOpen
-- ARGV[15] TTL in seconds of the active index (it outlives the documents: the sweep still has to
--          see an agent whose document expired)
-- ARGV[16] active-index entries scored below this are dropped (no sweep ran for that long)
--
-- Returns the document written.
--
-- The document is assembled as text in a fixed field order: cjson.encode would turn an empty
-- list into {} and order the fields at random.

local stored = {}
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' then
    stored = doc
  end
end

local function text_or_null(value)
  if type(value) == 'string' then
    return cjson.encode(value)
  end
  return 'null'
end

local function text_list(value)
  local parts = {}
  if type(value) == 'table' then
    for _, item in ipairs(value) do
      if type(item) == 'string' then
        parts[#parts + 1] = cjson.encode(item)
      end
    end
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

local function field(flag_at, stored_value, encode)
  if ARGV[flag_at] == '1' then
    return ARGV[flag_at + 1]
  end
  return encode(stored_value)
end

local now = ARGV[2]
local started
if ARGV[6] == '1' or type(stored['startedAt']) ~= 'string' then
  started = cjson.encode(now)
else
  started = cjson.encode(stored['startedAt'])
end

local doc = '{"agent":' .. cjson.encode(ARGV[1])
  .. ',"mode":' .. field(7, stored['mode'], text_or_null)
  .. ',"capabilities":' .. field(9, stored['capabilities'], text_list)
  .. ',"currentTask":' .. field(11, stored['currentTask'], text_or_null)
  .. ',"filesOpen":' .. field(13, stored['filesOpen'], text_list)
  .. ',"startedAt":' .. started
  .. ',"lastHeartbeat":' .. cjson.encode(now)
  .. '}'

redis.call('SET', KEYS[1], doc, 'EX', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[16])
redis.call('EXPIRE', KEYS[3], ARGV[15])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return doc
