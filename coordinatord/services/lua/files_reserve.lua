-- Reserve paths (globs) for an agent unless a live reservation of another agent overlaps them
-- in a conflicting mode (exclusive against anything; shared against exclusive). Lapsed
-- reservations met on the way are removed. The overlap test runs here, over every live
-- reservation of the project, so the check and the write are one atomic step.
-- KEYS[1] the project's reservations (hash: id -> document)   KEYS[2] the fencing counter
-- ARGV[1] new id  ARGV[2] agent  ARGV[3] mode  ARGV[4] lease (ms)  ARGV[5] reason
-- ARGV[6] fencing counter TTL (s)  ARGV[7] most live reservations  ARGV[8..] normalized globs
-- Returns {1, fencing, lease ms} when reserved; {0, doc, ms left, doc, ms left, ...} with the
-- conflicting reservations; {2, live count} when the project holds the most it may.
local hash, counter = KEYS[1], KEYS[2]
local id, agent, mode, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local paths = {}
for i = 8, #ARGV do paths[#paths + 1] = ARGV[i] end

local now_us
do
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local now_ms = math.floor(now_us / 1000)

local conflicts, live, lapsed = {0}, 0, {}
local all = redis.call('HGETALL', hash)
for k = 1, #all, 2 do
  local ok, doc = pcall(cjson.decode, all[k + 1])
  local ends = ok and type(doc) == 'table' and tonumber(doc.expires_at_ms) or 0
  if ends <= now_ms then
    lapsed[#lapsed + 1] = all[k]
  else
    live = live + 1
    if doc.agent ~= agent and (mode == 'exclusive' or doc.mode ~= 'shared') then
      local hit = false
      for _, theirs in ipairs(type(doc.paths) == 'table' and doc.paths or {}) do
        for _, ours in ipairs(paths) do
          if globs_overlap(ours, tostring(theirs)) then hit = true break end
        end
        if hit then break end
      end
      if hit then
        conflicts[#conflicts + 1] = all[k + 1]
        conflicts[#conflicts + 1] = ends - now_ms
      end
    end
  end
end
if #lapsed > 0 then redis.call('HDEL', hash, unpack(lapsed)) end
if #conflicts > 1 then return conflicts end
if live >= tonumber(ARGV[7]) then return {2, live} end

-- A missing counter starts from the server clock in microseconds (as the locks' does: it is
-- the same counter), so numbers keep rising even after it expired.
if redis.call('EXISTS', counter) == 0 then
  redis.call('SET', counter, string.format('%d', now_us))
end
local fencing = redis.call('INCR', counter)
redis.call('EXPIRE', counter, tonumber(ARGV[6]))

redis.call('HSET', hash, id, files_doc(id, agent, mode, cjson.encode(paths), ARGV[5], fencing, now_ms, now_ms + lease))
files_outlive(hash, lease)
return {1, string.format('%d', fencing), lease}
