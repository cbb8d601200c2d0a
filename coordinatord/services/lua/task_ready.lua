-- task_ready: the first ready tasks of a ready zset (all, or one label's), in score order, with
-- what an agent needs to choose one. Entries whose graph hash has expired, or that are no
-- longer ready (only a bug or a hand edit could leave one), are dropped on the way.
-- KEYS[1] the ready zset   ARGV[1] graph-hash prefix   ARGV[2] how many   ARGV[3] most entries read
-- Returns {id, priority, labels, deps, ...}.
local want, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local found, start = 0, 0
while found < want and start < budget do
  local page = redis.call('ZRANGE', KEYS[1], start, start + want - found - 1)
  if #page == 0 then
    break
  end
  start = start + #page
  for _, id in ipairs(page) do
    local hash = ARGV[1] .. id
    if graph_is_ready(hash) then
      local priority, labels, deps = unpack(redis.call('HMGET', hash, 'priority', 'labels', 'deps'))
      out[#out + 1] = id
      out[#out + 1] = priority or '0'
      out[#out + 1] = labels or ''
      out[#out + 1] = deps or ''
      found = found + 1
    else
      redis.call('ZREM', KEYS[1], id)
      start = start - 1
    end
  end
end
return out
