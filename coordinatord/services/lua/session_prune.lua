-- Drop index entries whose session document no longer exists (expired or deleted).
-- KEYS[1] sessions index, KEYS[2..] the candidates' documents; ARGV[i] the id for KEYS[i + 1]
-- Checked here rather than by the caller, so a session recreated meanwhile keeps its entry.
local dropped = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return dropped
