-- Local functions the task-graph scripts share (put before each of them: Lua has no include).
-- A task's graph hash (keyspace.task_graph_key) holds deps, left, priority, labels, score,
-- done, claimed_by, claimed_ms; lists are comma-separated (ids and labels cannot hold a comma).
-- A task is ready while left == 0, done == 0 and nobody has claimed it; it is then in the ready
-- zset and in the ready zset of each of its labels, scored by its hash's score.

local function graph_items(text)
  local items = {}
  for item in string.gmatch(text or '', '[^,]+') do
    items[#items + 1] = item
  end
  return items
end

local function graph_lists(text, item)
  return text and string.find(',' .. text .. ',', ',' .. item .. ',', 1, true) ~= nil
end

local function graph_is_ready(hash)
  local left, done, by = unpack(redis.call('HMGET', hash, 'left', 'done', 'claimed_by'))
  return left == '0' and done == '0' and (not by or by == '')
end

-- Into the ready zsets; `became` (a list) collects the task, so the caller can report it.
local function graph_ready_add(ready, label_prefix, ttl, task, hash, became)
  local score, labels = unpack(redis.call('HMGET', hash, 'score', 'labels'))
  if not score then
    return
  end
  redis.call('ZADD', ready, score, task)
  redis.call('EXPIRE', ready, ttl)
  for _, label in ipairs(graph_items(labels)) do
    local key = label_prefix .. label
    redis.call('ZADD', key, score, task)
    redis.call('EXPIRE', key, ttl)
  end
  became[#became + 1] = task
end

local function graph_ready_remove(ready, label_prefix, task, hash)
  redis.call('ZREM', ready, task)
  for _, label in ipairs(graph_items(redis.call('HGET', hash, 'labels'))) do
    redis.call('ZREM', label_prefix .. label, task)
  end
end
