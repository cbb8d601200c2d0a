-- Remove one agent's status document and its index entry together.
-- KEYS[1]  the status document (agent:status:<agent>)
-- KEYS[2]  the agents index
-- KEYS[3]  the sweep's active index, KEYS[4] its inactive index: an agent that said goodbye is
--          neither made inactive nor gone later
-- ARGV[1]  agent name
-- Returns the document removed, or false when there was none.
local current = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return current
