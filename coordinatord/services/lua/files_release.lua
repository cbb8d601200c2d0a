-- Release a reservation, only for the agent holding it.
-- KEYS[1] the project's reservations   ARGV[1] id  ARGV[2] agent
-- Returns {1, 'released', document}; {0, 'not_held', ''} (released already, or lapsed);
-- {0, 'not_yours', holder}.
local hash = KEYS[1]
local doc, raw = files_live(hash, ARGV[1], files_now_ms())
if not doc then return {0, 'not_held', ''} end
if doc.agent ~= ARGV[2] then return {0, 'not_yours', tostring(doc.agent)} end
redis.call('HDEL', hash, ARGV[1])
return {1, 'released', raw}
