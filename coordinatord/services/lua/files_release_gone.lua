-- The heartbeat sweep's release of the reservations of agents it found gone: only those taken
-- before the agent was marked gone (one it took again after the mark is its own business).
-- Lapsed reservations met on the way are removed.
-- KEYS[1] the project's reservations   KEYS[2] the gone-agents index (agent -> marked at, ms)
-- ARGV[1..] the gone agents
-- Returns {id, agent, paths (JSON), ...} for every reservation released.
local hash, out, drop = KEYS[1], {}, {}
local gone = {}
for i = 1, #ARGV do
  gone[ARGV[i]] = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[i]))
end
local now_ms = files_now_ms()
local all = redis.call('HGETALL', hash)
for k = 1, #all, 2 do
  local ok, doc = pcall(cjson.decode, all[k + 1])
  if not ok or type(doc) ~= 'table' or (tonumber(doc.expires_at_ms) or 0) <= now_ms then
    drop[#drop + 1] = all[k]
  else
    local at = gone[doc.agent]
    if at and (tonumber(doc.acquired_at_ms) or 0) < at then
      drop[#drop + 1] = all[k]
      out[#out + 1] = all[k]
      out[#out + 1] = tostring(doc.agent)
      out[#out + 1] = cjson.encode(doc.paths)
    end
  end
end
if #drop > 0 then redis.call('HDEL', hash, unpack(drop)) end
return out
