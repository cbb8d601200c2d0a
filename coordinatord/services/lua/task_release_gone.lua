-- The heartbeat sweep's claim release: the claims of agents it found gone go back, and each
-- task that can be is ready again (as lock_release_gone.lua does for locks).
-- KEYS[1] the ready index   KEYS[2] the gone-agents index (agent -> when marked gone, server ms)
-- KEYS[3..] the agents' claims sets (_idx:task_claims_of:{agent})
-- ARGV[1] graph-hash prefix   ARGV[2] ready-by-label prefix   ARGV[3] TTL (s) of the ready keys
-- ARGV[4..] the agents, in the order of their sets in KEYS
-- Returns {task, agent, 1 if now ready else 0, ...} for every claim released.
-- A set is only a hint: each claim is read here, and released only when it names the agent
-- and was taken before the agent was marked gone; a claim taken after the mark (the agent came
-- back) is kept. An agent no longer on the gone index is skipped.
local out = {}
for i = 3, #KEYS do
  local agent = ARGV[i + 1]
  local gone_at = tonumber(redis.call('ZSCORE', KEYS[2], agent))
  if gone_at then
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[i])) do
      local hash = ARGV[1] .. id
      local by, claimed = unpack(redis.call('HMGET', hash, 'claimed_by', 'claimed_ms'))
      if by ~= agent then
        redis.call('SREM', KEYS[i], id)
      elseif tonumber(claimed or '0') < gone_at then
        redis.call('HSET', hash, 'claimed_by', '')
        redis.call('HDEL', hash, 'claimed_ms')
        redis.call('SREM', KEYS[i], id)
        local became = {}
        if graph_is_ready(hash) then
          graph_ready_add(KEYS[1], ARGV[2], ARGV[3], id, hash, became)
        end
        out[#out + 1] = id
        out[#out + 1] = agent
        out[#out + 1] = #became
      end
    end
  end
end
return out
