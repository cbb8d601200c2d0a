-- Compare-and-set of one task document, and its entry in the tasks index, in one step; and,
-- in the same step, the task's place in the task graph (see task_graph_common.lua).
--
-- KEYS[1]  the task document (task:progress:<id>)
-- KEYS[2]  the tasks index (zset: task id -> updatedAt in ms)
-- KEYS[3]  the ready index (zset)
-- KEYS[4]  the task's graph hash
-- ARGV[1]  what the caller based its change on: 'absent', or the SHA-1 of the document it read
-- ARGV[2]  the new document (JSON, written as given)
-- ARGV[3]  TTL in seconds, for the document, the index and the graph keys it writes
-- ARGV[4]  index score: the new updatedAt in ms
-- ARGV[5]  the task id (index member)
-- ARGV[6]  index entries scored below this are dropped: their documents have expired
-- ARGV[7]  '1' when the new document's status is completed, else '0'
-- ARGV[8..11] key prefixes: graph hashes, dependents sets, ready-by-label zsets, claims sets
-- ARGV[12] 'create' (task_create: a new graph entry from ARGV[13..]) or 'change'
-- ARGV[13] priority   ARGV[14] ready score   ARGV[15] labels (comma-separated)
-- ARGV[16] most tasks the cycle check may walk   ARGV[17..] the dependencies
--
-- Returns {1, task made ready, ...} when written; {0} when the key is absent and the caller
-- expected a document; {0, current} when the document is not the one the caller read, so that
-- the caller can re-apply its change to `current` without another round trip; {-1, reason,
-- task} when a create is refused ('unknown': no such dependency, 'self', 'cycle': that
-- dependency already depends on this task, 'walk_limit'): nothing is written then.
--
-- Comparing the whole document rather than its version field also catches a raw redis_set
-- that rewrote the JSON but kept the version (the seed's get-modify-set sample does that).
--
-- Graph: a change whose new status moves the task into or out of completed (against the hash's
-- done flag) updates each dependent's count of dependencies left, and moves dependents into
-- (count now 0) or out of (count now 1) the ready index, here, in the same step as the write:
-- no reader ever sees a completed dependency whose dependent is not yet ready. Completing a
-- task also ends its claim. A document without a graph hash (written before the graph
-- existed) is written as before.

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

local ttl = ARGV[3]
local id = ARGV[5]
local new_done = ARGV[7]
local graph_prefix, dependents_prefix, label_prefix, claims_prefix = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local ready, hash = KEYS[3], KEYS[4]
local became = {}

-- The dependents of `task` follow its move into (done) or out of completed.
local function dependents_follow(task, done)
  local set = dependents_prefix .. task
  for _, dependent in ipairs(redis.call('SMEMBERS', set)) do
    local its = graph_prefix .. dependent
    -- A member is checked against the dependent's own list: the dependent may have expired,
    -- or been created again since with other dependencies.
    if not graph_lists(redis.call('HGET', its, 'deps'), task) then
      redis.call('SREM', set, dependent)
    elseif done then
      local left = redis.call('HINCRBY', its, 'left', -1)
      if left < 0 then
        redis.call('HSET', its, 'left', 0)
      elseif left == 0 and graph_is_ready(its) then
        graph_ready_add(ready, label_prefix, ttl, dependent, its, became)
      end
    elseif redis.call('HINCRBY', its, 'left', 1) == 1 then
      graph_ready_remove(ready, label_prefix, dependent, its)
    end
  end
end

if ARGV[12] == 'create' then
  local deps = {}
  local wanted = {}
  for i = 17, #ARGV do
    deps[#deps + 1] = ARGV[i]
    wanted[ARGV[i]] = true
  end
  for _, dep in ipairs(deps) do
    if dep == id then
      return {-1, 'self', dep}
    end
    if redis.call('EXISTS', graph_prefix .. dep) == 0 then
      return {-1, 'unknown', dep}
    end
  end
  local replacing = redis.call('EXISTS', hash) == 1
  if replacing and #deps > 0 then
    -- Only a replace can close a cycle (a new task has no dependents): refuse when a new
    -- dependency already depends on this task, directly or through others.
    local seen = {[id] = true}
    local queue = {id}
    local head, limit = 1, tonumber(ARGV[16])
    while head <= #queue do
      local task = queue[head]
      head = head + 1
      for _, dependent in ipairs(redis.call('SMEMBERS', dependents_prefix .. task)) do
        if not seen[dependent] and graph_lists(redis.call('HGET', graph_prefix .. dependent, 'deps'), task) then
          if wanted[dependent] then
            return {-1, 'cycle', dependent}
          end
          seen[dependent] = true
          queue[#queue + 1] = dependent
          if #queue > limit then
            return {-1, 'walk_limit', dependent}
          end
        end
      end
    end
  end
  if replacing then
    -- Starting over: the old dependencies, claim and ready entry go; the dependents stay.
    local old_deps, old_done, old_by = unpack(redis.call('HMGET', hash, 'deps', 'done', 'claimed_by'))
    for _, old in ipairs(graph_items(old_deps)) do
      redis.call('SREM', dependents_prefix .. old, id)
    end
    if old_by and old_by ~= '' then
      redis.call('SREM', claims_prefix .. old_by, id)
    end
    graph_ready_remove(ready, label_prefix, id, hash)
    redis.call('DEL', hash)
    if old_done == '1' then
      dependents_follow(id, false)
    end
  end
  local left = 0
  for _, dep in ipairs(deps) do
    local set = dependents_prefix .. dep
    redis.call('SADD', set, id)
    redis.call('EXPIRE', set, ttl)
    if redis.call('HGET', graph_prefix .. dep, 'done') ~= '1' then
      left = left + 1
    end
  end
  redis.call('HSET', hash, 'deps', table.concat(deps, ','), 'left', left, 'priority', ARGV[13],
    'score', ARGV[14], 'labels', ARGV[15], 'done', new_done, 'claimed_by', '')
  if graph_is_ready(hash) then
    graph_ready_add(ready, label_prefix, ttl, id, hash, became)
  end
elseif redis.call('EXISTS', hash) == 1 and redis.call('HGET', hash, 'done') ~= new_done then
  redis.call('HSET', hash, 'done', new_done)
  if new_done == '1' then
    local by = redis.call('HGET', hash, 'claimed_by')
    if by and by ~= '' then
      redis.call('SREM', claims_prefix .. by, id)
      redis.call('HSET', hash, 'claimed_by', '')
      redis.call('HDEL', hash, 'claimed_ms')
    end
    graph_ready_remove(ready, label_prefix, id, hash)
    dependents_follow(id, true)
  else
    dependents_follow(id, false)
    if graph_is_ready(hash) then
      graph_ready_add(ready, label_prefix, ttl, id, hash, became)
    end
  end
end
-- The graph entry and the dependents set live as long as the document (no-ops when absent).
redis.call('EXPIRE', hash, ttl)
redis.call('EXPIRE', dependents_prefix .. id, ttl)

redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('ZADD', KEYS[2], ARGV[4], id)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('EXPIRE', KEYS[2], ttl)
local out = {1}
for _, task in ipairs(became) do
  out[#out + 1] = task
end
return out
