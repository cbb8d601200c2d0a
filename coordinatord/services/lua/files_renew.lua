-- Make a live reservation end `lease` ms from now, only for the agent holding it. A lapsed one
-- cannot be renewed: another agent may have reserved those paths since.
-- KEYS[1] the project's reservations   ARGV[1] id  ARGV[2] agent  ARGV[3] lease (ms)
-- Returns {1, 'renewed', document}; {0, 'not_held', ''}; {0, 'not_yours', holder}.
local hash, lease = KEYS[1], tonumber(ARGV[3])
local now_ms = files_now_ms()
local doc = files_live(hash, ARGV[1], now_ms)
if not doc then return {0, 'not_held', ''} end
if doc.agent ~= ARGV[2] then return {0, 'not_yours', tostring(doc.agent)} end
local raw = files_doc(doc.id, doc.agent, doc.mode, cjson.encode(doc.paths), doc.reason or '',
  tonumber(doc.fencing) or 0, tonumber(doc.acquired_at_ms) or now_ms, now_ms + lease)
redis.call('HSET', hash, ARGV[1], raw)
files_outlive(hash, lease)
return {1, 'renewed', raw}
