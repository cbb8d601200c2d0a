-- Give up a job's leader lease, if this daemon holds it.
-- KEYS[1] lease key; ARGV[1] this daemon's id. 1: given up; 0: not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
