-- Put before the lock scripts that read a lock (see services/shared.py: lua(..., after=...)).
-- read_lock(key) -> exists, document (a table, or nil when it is not a lock document), holder
-- (its agent's name, for messages; a placeholder when the document does not name one).
local function read_lock(key)
  local raw = redis.call('GET', key)
  if not raw then
    return false, nil, ''
  end
  local ok, held = pcall(cjson.decode, raw)
  if not (ok and type(held) == 'table') then
    return true, nil, '(unknown: not a lock document)'
  end
  local holder = '(unknown: not a lock document)'
  if type(held.agent) == 'string' then
    holder = held.agent
  end
  return true, held, holder
end

