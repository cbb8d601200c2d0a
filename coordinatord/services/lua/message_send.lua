-- Send one message: a new id, the document, its thread entry, and its delivery, all or nothing.
-- KEYS[1] message counter  KEYS[2] broadcasts index  KEYS[3] agents index  KEYS[4] presence index
-- KEYS[5..] the inbox of each named recipient (none for a broadcast)
-- ARGV[1] message key prefix  ARGV[2] thread key prefix  ARGV[3] read-set prefix
-- ARGV[4] acked-set prefix  ARGV[5] the document's fields after id, thread and time, as JSON
-- without its opening brace  ARGV[6] thread id ('' : the message starts its own thread)
-- ARGV[7] ttl (s)  ARGV[8] max inbox  ARGV[9] max broadcasts  ARGV[10] 1: broadcast
-- ARGV[11..] the named recipients, in the order of KEYS[5..]
-- All keys share the project's hash tag; the read sets, thread and document keys are built
-- here from their prefixes (same slot), because the id and a drop candidate are known only here.
-- Returns {1, id, thread, sent_at_ms, dropped, not_seen...} or {0, 'inbox_full', recipient}
local ttl = tonumber(ARGV[7])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cutoff = '(' .. string.format('%d', now_us - ttl * 1000000)
local broadcast = ARGV[10] == '1'

-- First every check, then every write: a refused send changes nothing.
local drops = {}
if not broadcast then
  for i = 5, #KEYS do
    local inbox, agent = KEYS[i], ARGV[i + 6]
    redis.call('ZREMRANGEBYSCORE', inbox, '-inf', cutoff)
    if redis.call('ZCARD', inbox) >= tonumber(ARGV[8]) then
      -- Full: make room with the oldest message the recipient is done with (read, and acked
      -- when the sender asked for an ack), or whose document is gone. Unread mail is never dropped.
      local read, acked = ARGV[3] .. agent, ARGV[4] .. agent
      local victim = nil
      for _, id in ipairs(redis.call('ZRANGE', inbox, 0, -1)) do
        if redis.call('ZSCORE', acked, id) then
          victim = id
        elseif redis.call('ZSCORE', read, id) then
          local doc = redis.call('GET', ARGV[1] .. id)
          if not doc or not string.find(doc, '"ack_required":true', 1, true) then
            victim = id
          end
        elseif redis.call('EXISTS', ARGV[1] .. id) == 0 then
          victim = id
        end
        if victim then break end
      end
      if not victim then
        return {0, 'inbox_full', agent}
      end
      drops[inbox] = victim
    end
  end
end

-- Ids: the server clock in µs, or one past the last id when the clock has not moved on (or
-- went back): unique and rising within the project, and still rising if the counter expired.
local id = now_us
local last = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if id <= last then
  id = last + 1
end
local id_s = string.format('%d', id)
redis.call('SET', KEYS[1], id_s, 'EX', ttl * 2)

local thread = ARGV[6]
if thread == '' then
  thread = id_s
end
local sent_ms = string.format('%d', math.floor(now_us / 1000))
-- Built by hand: cjson would print the 16-digit id with 14 significant digits.
local doc = '{"id":"' .. id_s .. '","thread_id":' .. cjson.encode(thread) .. ',"sent_at_ms":' .. sent_ms
  .. ',' .. ARGV[5]
redis.call('SET', ARGV[1] .. id_s, doc, 'EX', ttl)

local function add(index)
  redis.call('ZADD', index, id_s, id_s)
  redis.call('EXPIRE', index, ttl)
end

local thread_key = ARGV[2] .. thread
redis.call('ZREMRANGEBYSCORE', thread_key, '-inf', cutoff)
add(thread_key)

local dropped = 0
if broadcast then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[9]) + 1
  if over > 0 then
    redis.call('ZPOPMIN', KEYS[2], over)
    dropped = over
  end
  add(KEYS[2])
else
  for i = 5, #KEYS do
    local victim = drops[KEYS[i]]
    if victim then
      redis.call('ZREM', KEYS[i], victim)
      dropped = dropped + 1
    end
    add(KEYS[i])
  end
end

-- Recipients nobody has seen lately (no registration, no open connection): delivered anyway,
-- reported so that a misspelt name is noticed.
local reply = {1, id_s, thread, sent_ms, dropped}
local now_ms = math.floor(now_us / 1000)
for i = 11, #ARGV do
  local agent = ARGV[i]
  local present = tonumber(redis.call('ZSCORE', KEYS[4], agent) or '0') or 0
  if not redis.call('ZSCORE', KEYS[3], agent) and present <= now_ms then
    reply[#reply + 1] = agent
  end
end
return reply
