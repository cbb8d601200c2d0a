-- How long each reservation has left, for the daemon's lapse notes (asked only once a
-- connection's own record says a lease has ended: the holder may have renewed elsewhere).
-- KEYS[1] the project's reservations   ARGV[1..] ids
-- Returns {ms left (0: gone or lapsed), ...} in the order of the ids.
local now_ms, out = files_now_ms(), {}
for i = 1, #ARGV do
  local doc = files_live(KEYS[1], ARGV[i], now_ms)
  out[i] = doc and (tonumber(doc.expires_at_ms) - now_ms) or 0
end
return out
