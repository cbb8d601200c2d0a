-- The heartbeat sweep's lock release: the locks of agents it found gone, found through each
-- agent's set of held resources instead of a walk over every lock of the project.
-- KEYS[1] the locks index   KEYS[2] the gone-agents index (agent -> when marked gone, server ms)
-- KEYS[3..] the agents' sets of held resources (_idx:locks_of:{agent})
-- ARGV[1] prefix of the lock keys (a lock is this + its resource; same hash tag, so one slot)
-- ARGV[2..] the agents, in the order of their sets in KEYS
-- Returns {resource, holder, ...} for every lock released.
-- A set is only a hint: every lock is read, decoded and compared here. A lock is released only
-- when its document names the agent and was acquired before the agent was marked gone; a lock
-- someone else holds now, or one the agent took again after the mark, is never touched. An
-- agent no longer on the gone index (its locks already walked) is skipped. Members that no
-- longer name a lock of the agent are dropped from its set.
local out = {}
for i = 3, #KEYS do
  local agent = ARGV[i - 1]
  local gone_at = tonumber(redis.call('ZSCORE', KEYS[2], agent))
  if gone_at then
    for _, resource in ipairs(redis.call('SMEMBERS', KEYS[i])) do
      local lock = ARGV[1] .. resource
      -- pcall: a key of another type written by hand under lock:* must not abort the batch.
      local raw = redis.pcall('GET', lock)
      local held = nil
      if type(raw) == 'string' then
        local ok, doc = pcall(cjson.decode, raw)
        if ok and type(doc) == 'table' and doc.agent == agent then
          held = doc
        end
      end
      if held == nil then
        redis.call('SREM', KEYS[i], resource)
      else
        local acquired = tonumber(held.acquired_at_ms)
        if acquired and acquired < gone_at then
          redis.call('DEL', lock)
          redis.call('ZREM', KEYS[1], resource)
          redis.call('SREM', KEYS[i], resource)
          out[#out + 1] = resource
          out[#out + 1] = agent
        end
      end
    end
  end
end
return out
