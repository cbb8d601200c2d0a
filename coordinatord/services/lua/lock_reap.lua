-- One batch of the lock reaper.
-- KEYS[1] the locks index   KEYS[2] the gone-agents index (agent -> when marked gone, server ms)
-- KEYS[3..] lock:{resource} for resources read from the locks index (those the caller's reading
--           found may need a change: this script decides again on what it finds)
-- It releases locks of gone holders, drops index entries whose lock no longer exists, and
-- re-scores entries whose lease the index thinks over while the lock still has one.
-- ARGV[1] length of the lock keys' common prefix (namespace + 'lock:'): a resource is the rest
--         of its key, so a batch of 1 000 is sent once, not twice
-- ARGV[2] prefix of the per-agent sets of held resources (a released lock leaves its holder's)
-- Returns {index entries removed, resource, action, holder, ...} with action one of
--   'released'  the holder was marked gone after it acquired the lock: lock deleted (a lock
--               taken in the very millisecond of the mark is left to its lease)
--   'missing'   no lock behind the entry (lease ended, or deleted): entry removed
--   'reindexed' the entry's score moved to the lock's real lease end
-- A lock of a gone holder is deleted only after its document is read, decoded and compared in
-- this script: a lock taken meanwhile by anyone else (or by the same agent after it was marked
-- gone) is never touched. A holder that never had a status is never gone: its locks end with
-- their lease.
local any_gone = redis.call('ZCARD', KEYS[2]) > 0
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {0}
local removed = 0

local function report(resource, action, holder)
  out[#out + 1] = resource
  out[#out + 1] = action
  out[#out + 1] = holder
end

local skip = tonumber(ARGV[1])
for i = 3, #KEYS do
  local lock = KEYS[i]
  local resource = string.sub(lock, skip + 1)
  local raw = false
  local exists
  if any_gone then
    -- pcall: a key of another type written by hand under lock:* must not abort the batch.
    raw = redis.pcall('GET', lock)
    exists = raw ~= false
  else
    exists = redis.call('EXISTS', lock) == 1
  end
  if not exists then
    -- Only an entry this script removes is reported: a release may have removed it already.
    if redis.call('ZREM', KEYS[1], resource) == 1 then
      removed = removed + 1
      report(resource, 'missing', '')
    end
  else
    local released = false
    if type(raw) == 'string' then
      local ok, held = pcall(cjson.decode, raw)
      if ok and type(held) == 'table' and type(held.agent) == 'string' then
        local gone_at = redis.call('ZSCORE', KEYS[2], held.agent)
        local acquired = tonumber(held.acquired_at_ms)
        if gone_at and acquired and acquired < tonumber(gone_at) then
          redis.call('DEL', lock)
          redis.call('ZREM', KEYS[1], resource)
          redis.call('SREM', ARGV[2] .. held.agent, resource)
          removed = removed + 1
          released = true
          report(resource, 'released', held.agent)
        end
      end
    end
    if not released then
      local score = redis.call('ZSCORE', KEYS[1], resource)
      local left = redis.call('PTTL', lock)
      if score and left >= 0 and tonumber(score) < now_ms then
        redis.call('ZADD', KEYS[1], string.format('%d', now_ms + left), resource)
        report(resource, 'reindexed', '')
      end
    end
  end
end
out[1] = removed
return out
