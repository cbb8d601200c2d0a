-- Compare-and-delete: remove a session only if it is still exactly the state that was archived.
-- KEYS[1] context document, KEYS[2] history list, KEYS[3] sessions index,
-- KEYS[4] the session's host
-- ARGV[1] SHA-1 of the archived document ("" if it had none), ARGV[2] archived history length,
-- ARGV[3] session id
-- Returns 1 when deleted, 0 when the session is already gone, -1 when it changed.
local current = redis.call('GET', KEYS[1])
local length = redis.call('LLEN', KEYS[2])
if not current and length == 0 then
  redis.call('ZREM', KEYS[3], ARGV[3])
  return 0
end
local sha = ''
if current then sha = redis.sha1hex(current) end
if sha ~= ARGV[1] or length ~= tonumber(ARGV[2]) then return -1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
