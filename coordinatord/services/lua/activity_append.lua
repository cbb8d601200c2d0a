-- Append events to one project's activity stream in one call. A pipeline of XADDs costs about
-- three times as much per event, nearly all of it in the client (one reply to parse per XADD).
-- KEYS[1] the stream
-- ARGV[1] approximate length cap (XADD MAXLEN ~)   ARGV[2] TTL (s) of the stream, refreshed
-- ARGV[3..] the events, 8 values each, in the order of the field names below
-- Returns the number of events written.
local fields = {'ts', 'agent', 'project', 'kind', 'name', 'key', 'outcome', 'duration_ms'}
local written = 0
for i = 3, #ARGV, 8 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
    fields[1], ARGV[i], fields[2], ARGV[i + 1], fields[3], ARGV[i + 2], fields[4], ARGV[i + 3],
    fields[5], ARGV[i + 4], fields[6], ARGV[i + 5], fields[7], ARGV[i + 6], fields[8], ARGV[i + 7])
  written = written + 1
end
if written > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return written
