-- redis_del: delete the keys; returns how many there were. A script rather than DEL so that it
-- is exactly-once (store/once.py): a resend after a lost reply answers the first count, not 0.
-- KEYS the keys (all in one project's namespace: one hash tag, one slot)
local deleted = 0
for i = 1, #KEYS, 1000 do
  deleted = deleted + redis.call('DEL', unpack(KEYS, i, math.min(i + 999, #KEYS)))
end
return deleted
