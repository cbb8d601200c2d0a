-- Append events to one project's activity stream in one call. A pipeline of XADDs costs about
-- three times as much per event, nearly all of it in the client (one reply to parse per XADD).
-- KEYS[1] the stream
-- ARGV[1] approximate length cap (XADD MAXLEN ~)   ARGV[2] TTL (s) of the stream, refreshed
-- ARGV[3..] the events, each: 8 values in the order of the field names below, then the number
--   n of extra fields, then n name/value pairs (connection events carry the peer's pid and uid;
--   readers that know only the 8 fields ignore them)
-- Returns the number of events written.
local fields = {'ts', 'agent', 'project', 'kind', 'name', 'key', 'outcome', 'duration_ms'}
local written = 0
local i = 3
while i <= #ARGV do
  local extra = tonumber(ARGV[i + 8])
  if extra == 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
      fields[1], ARGV[i], fields[2], ARGV[i + 1], fields[3], ARGV[i + 2], fields[4], ARGV[i + 3],
      fields[5], ARGV[i + 4], fields[6], ARGV[i + 5], fields[7], ARGV[i + 6], fields[8], ARGV[i + 7])
  else
    local command = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
    for f = 1, 8 do
      command[#command + 1] = fields[f]
      command[#command + 1] = ARGV[i + f - 1]
    end
    for e = 1, 2 * extra do
      command[#command + 1] = ARGV[i + 8 + e]
    end
    redis.call(unpack(command))
  end
  i = i + 9 + 2 * extra
  written = written + 1
end
if written > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return written
