-- Take a lock if it is free, re-enter it if the caller's agent holds it, else report the holder.
-- KEYS[1] lock:{resource}   KEYS[2] locks index (zset: resource -> lease end, ms)
-- KEYS[3] fencing counter   KEYS[4] the agent's set of held resources (_idx:locks_of:{agent})
-- ARGV[1] resource  ARGV[2] agent  ARGV[3] token for a new acquisition  ARGV[4] lease (ms)
-- ARGV[5] fencing counter TTL (s)  ARGV[6] index grace (ms)
-- Numbers passed to redis.call go through string.format: Lua would print them with 14 digits.
-- Returns {acquired (0/1), token, fencing, holder, remaining lease (ms; -1: no expiry), reentered (0/1)}
local lock, index, counter = KEYS[1], KEYS[2], KEYS[3]
local resource, agent, token = ARGV[1], ARGV[2], ARGV[3]
local lease = tonumber(ARGV[4])

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)

-- The index only serves lock_list; entries whose lease ended long ago are dropped here.
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. string.format('%d', now_ms - tonumber(ARGV[6])))

local function outlive_lease(key)
  -- An index must outlive every lease it lists; it never needs to outlive the longest.
  if redis.call('PTTL', key) < lease then
    redis.call('PEXPIRE', key, lease)
  end
end

-- The agent's set loses a member on release; a lease that just ran out leaves one behind. Each
-- acquisition checks two members at random and drops those that no longer name a lock of this
-- agent, so the set stays near the number of locks it holds. The lock key is built from this
-- one's prefix (same hash tag, so the same slot); the document is usually the one written below.
local lock_prefix = string.sub(lock, 1, #lock - #resource)
local mine = '"agent":' .. cjson.encode(agent) .. ','
local function prune_held_set()
  for _, other in ipairs(redis.call('SRANDMEMBER', KEYS[4], 2)) do
    local raw = redis.pcall('GET', lock_prefix .. other)
    local held = type(raw) == 'string' and string.find(raw, mine, 1, true) ~= nil
    if type(raw) == 'string' and not held then
      -- Not our own spelling of the document: decide on the parsed one.
      local ok, doc = pcall(cjson.decode, raw)
      held = ok and type(doc) == 'table' and doc.agent == agent
    end
    if not held then
      redis.call('SREM', KEYS[4], other)
    end
  end
end

local function index_until(ms)
  redis.call('ZADD', index, string.format('%d', ms), resource)
  outlive_lease(index)
  prune_held_set()
  redis.call('SADD', KEYS[4], resource)
  outlive_lease(KEYS[4])
end

local exists, held, holder = read_lock(lock)
if exists then
  if held and held.agent == agent and type(held.token) == 'string' then
    -- Re-entry never shortens the lease: an outer section of the same agent may still need it.
    local left = redis.call('PTTL', lock)
    if left >= 0 and left < lease then
      redis.call('PEXPIRE', lock, lease)
      index_until(now_ms + lease)
      left = lease
    end
    return {1, held.token, string.format('%d', tonumber(held.fencing) or 0), agent, left, 1}
  end
  return {0, '', '', holder, redis.call('PTTL', lock), 0}
end

-- A missing counter starts from the server clock in microseconds, so numbers keep rising even
-- after the counter expired: fewer than one acquisition per microsecond ever happened.
if redis.call('EXISTS', counter) == 0 then
  redis.call('SET', counter, string.format('%d', now_us))
end
local fencing = redis.call('INCR', counter)
redis.call('EXPIRE', counter, tonumber(ARGV[5]))

-- Built by hand: cjson prints numbers with 14 significant digits, fencing numbers have 16.
local doc = '{"token":' .. cjson.encode(token) .. ',"agent":' .. cjson.encode(agent)
  .. ',"fencing":' .. string.format('%d', fencing)
  .. ',"acquired_at_ms":' .. string.format('%d', now_ms) .. '}'
redis.call('SET', lock, doc, 'PX', lease)
index_until(now_ms + lease)
return {1, token, string.format('%d', fencing), agent, lease, 0}
