-- Delete every window of a service at once, provided the caller named all of them.
-- KEYS[1] the service's window set   KEYS[2..] the logs ratelimit:{service}:{window_s} to delete
-- ARGV: every window the caller knows of
-- Returns {logs deleted}, or, when the set holds a window the caller did not name (a hit added
-- it meanwhile), {-1, window, window, ...}: the whole set, for the caller's next attempt.
local named = {}
for i = 1, #ARGV do
  named[ARGV[i]] = true
end
local windows = redis.call('SMEMBERS', KEYS[1])
for _, window in ipairs(windows) do
  if not named[window] then
    table.insert(windows, 1, -1)
    return windows
  end
end
local cleared = 0
if #KEYS > 1 then
  cleared = redis.call('DEL', unpack(KEYS, 2))
end
redis.call('DEL', KEYS[1])
return {cleared}
