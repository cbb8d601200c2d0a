-- Take or renew a job's leader lease.
-- KEYS[1] lease key; ARGV[1] this daemon's id; ARGV[2] lease length in ms.
-- 1: this daemon holds the lease now (taken or renewed); 0: another daemon holds it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
