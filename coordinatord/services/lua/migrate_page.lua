-- Write one page of an old namespace's key into the new namespace (services/migrate.py).
-- One key, so one slot: on Redis Cluster the two namespaces are different slots, and no script
-- may touch both; the old key is read by plain commands and its content handed over here.
-- KEYS[1] the key in the new namespace
-- ARGV[1] its type: string | hash | set | zset | list | stream
-- ARGV[2] the old key's PTTL in ms (-1: it had no expiry)
-- ARGV[3] mode: 'create' (write only when the key is absent: strings, lists, streams), 'append'
--         (a later page of a key this migration created), 'merge' (add what the key lacks, its
--         own fields, members and scores winning: hashes, sets, sorted sets), 'max' (a counter:
--         the larger number wins, so fencing tokens never go back)
-- ARGV[4...] the page: a string's value | hash field, value, ... | set members | zset score,
--         member, ... | list elements | stream entries as id, field count, field, value, ...
-- Returns 'copied' (the key was absent and is written), 'merged' (content was added to the key
-- the new namespace held), or 'kept' (the new namespace's key was left as it was).
local key, kind, ttl, mode = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local existed = redis.call('EXISTS', key) == 1
if existed and redis.call('TYPE', key).ok ~= kind then
  return 'kept'
end
if existed and mode == 'create' then
  return 'kept'
end
local outcome = existed and 'merged' or 'copied'
if kind == 'string' then
  if not existed then
    redis.call('SET', key, ARGV[4])
  else
    -- mode 'max': the larger counter wins, keeping the key's own TTL (restored below)
    local own, old = tonumber(redis.call('GET', key)), tonumber(ARGV[4])
    if own == nil or old == nil or old <= own then
      return 'kept'
    end
    local left = redis.call('PTTL', key)
    redis.call('SET', key, ARGV[4])
    if left > 0 then redis.call('PEXPIRE', key, left) end
  end
elseif kind == 'hash' then
  for i = 4, #ARGV, 2 do
    redis.call('HSETNX', key, ARGV[i], ARGV[i + 1])
  end
elseif kind == 'set' then
  for i = 4, #ARGV, 500 do
    redis.call('SADD', key, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
elseif kind == 'zset' then
  for i = 4, #ARGV, 2 do
    redis.call('ZADD', key, 'NX', ARGV[i], ARGV[i + 1])
  end
elseif kind == 'list' then
  for i = 4, #ARGV, 500 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
elseif kind == 'stream' then
  local i = 4
  while i <= #ARGV do
    local id, n = ARGV[i], tonumber(ARGV[i + 1])
    redis.call('XADD', key, id, unpack(ARGV, i + 2, i + 1 + 2 * n))
    i = i + 2 + 2 * n
  end
else
  return redis.error_reply('migrate_page: unknown type ' .. tostring(kind))
end
-- The TTL: a key created here gets the old key's; a merged one the longer of the two (none when
-- either had none), so an index never expires before the documents it lists.
if redis.call('EXISTS', key) == 0 then
  return outcome
end
if not existed then
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
elseif mode ~= 'append' then
  local own = redis.call('PTTL', key)
  if ttl < 0 then
    if own >= 0 then redis.call('PERSIST', key) end
  elseif own >= 0 and ttl > own then
    redis.call('PEXPIRE', key, ttl)
  end
end
return outcome
