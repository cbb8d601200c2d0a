-- Mark messages of an agent's inbox read (and, for an ack, acknowledged); return their documents.
-- KEYS[1] the agent's inbox  KEYS[2] broadcasts index  KEYS[3] its read set  KEYS[4] its acked set
-- ARGV[1] message key prefix  ARGV[2] acks-set prefix  ARGV[3] the agent
-- ARGV[4] its sender field as documents spell it  ARGV[5] 1: acknowledge  ARGV[6] ttl (s)
-- ARGV[7..] message ids
-- Only messages the agent received can be marked: named in its inbox, or a broadcast by another.
-- Returns {id, document or false, acked (0/1), ...} per id, in the order given.
local ttl = tonumber(ARGV[6])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cutoff = '(' .. string.format('%d', now_us - ttl * 1000000)
local ack = ARGV[5] == '1'
local reply = {}
local marked = false
for k = 7, #ARGV do
  local id = ARGV[k]
  local doc = false
  local named = redis.call('ZSCORE', KEYS[1], id)
  if named or redis.call('ZSCORE', KEYS[2], id) then
    doc = redis.call('GET', ARGV[1] .. id)
    if not doc then
      redis.call('ZREM', KEYS[1], id)  -- expired: its index entry goes with it
    elseif not named and string.find(doc, ARGV[4], 1, true) then
      doc = false  -- the agent's own broadcast is not in its inbox
    end
  end
  local acked = 0
  if doc then
    marked = true
    redis.call('ZADD', KEYS[3], id, id)
    if ack then
      redis.call('ZADD', KEYS[4], id, id)
      if string.find(doc, '"ack_required":true', 1, true) then
        -- The sender sees who acknowledged (message_thread); the set lives as the message does.
        local acks = ARGV[2] .. id
        redis.call('SADD', acks, ARGV[3])
        local left = redis.call('PTTL', ARGV[1] .. id)
        if left > 0 then
          redis.call('PEXPIRE', acks, left)
        end
      end
    end
    if redis.call('ZSCORE', KEYS[4], id) then
      acked = 1
    end
  end
  reply[#reply + 1] = id
  reply[#reply + 1] = doc
  reply[#reply + 1] = acked
end
if marked then
  for s = 3, 4 do
    redis.call('ZREMRANGEBYSCORE', KEYS[s], '-inf', cutoff)
    if redis.call('EXISTS', KEYS[s]) == 1 then
      redis.call('EXPIRE', KEYS[s], ttl)
    end
  end
end
return reply
