-- One page of an agent's inbox: its named messages and the project's broadcasts (but its own),
-- merged in id order, after a given id; read-only.
-- KEYS[1] the agent's inbox  KEYS[2] broadcasts index  KEYS[3] its read set  KEYS[4] its acked set
-- ARGV[1] message key prefix  ARGV[2] the agent's sender field as documents spell it
-- ('"sender":<json>,')  ARGV[3] after this id (exclusive; '' : from the start)
-- ARGV[4] limit  ARGV[5] 1: unread only  ARGV[6] ttl (s)
-- Returns {more (0/1), id, document, read (0/1), acked (0/1), broadcast (0/1), ...}
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local low = string.format('%d', now_us - tonumber(ARGV[6]) * 1000000)
if ARGV[3] ~= '' and tonumber(ARGV[3]) >= tonumber(low) then
  low = '(' .. ARGV[3]
end
local direct = redis.call('ZRANGEBYSCORE', KEYS[1], low, '+inf')
local broadcasts = redis.call('ZRANGEBYSCORE', KEYS[2], low, '+inf')
local limit, unread_only, mine = tonumber(ARGV[4]), ARGV[5] == '1', ARGV[2]

local reply = {0}
local found = 0
local i, j = 1, 1
while i <= #direct or j <= #broadcasts do
  local id, from_broadcast
  -- Ids have the same number of digits for centuries: comparing as numbers is exact (< 2^53).
  if j > #broadcasts or (i <= #direct and tonumber(direct[i]) <= tonumber(broadcasts[j])) then
    id, from_broadcast = direct[i], false
    i = i + 1
    if j <= #broadcasts and broadcasts[j] == id then
      j = j + 1  -- never listed twice
    end
  else
    id, from_broadcast = broadcasts[j], true
    j = j + 1
  end
  local read = redis.call('ZSCORE', KEYS[3], id) and 1 or 0
  if not (unread_only and read == 1) then
    local doc = redis.call('GET', ARGV[1] .. id)
    if doc and not (from_broadcast and string.find(doc, mine, 1, true)) then
      if found == limit then
        reply[1] = 1
        break
      end
      found = found + 1
      local acked = redis.call('ZSCORE', KEYS[4], id) and 1 or 0
      reply[#reply + 1] = id
      reply[#reply + 1] = doc
      reply[#reply + 1] = read
      reply[#reply + 1] = acked
      reply[#reply + 1] = from_broadcast and 1 or 0
    end
  end
end
return reply
