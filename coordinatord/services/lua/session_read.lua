-- A consistent snapshot of one session (read-only).
-- KEYS[1] context document, KEYS[2] history list
-- ARGV[1] "1" to return the document and its SHA-1, ARGV[2] LRANGE start ("" for no turns),
-- ARGV[3] LRANGE stop
-- Returns {exists (0/1), document or "", sha1 or "", history length, document TTL, turns}
local doc = redis.call('GET', KEYS[1])
local exists, body, sha = 0, '', ''
if doc then
  exists = 1
  if ARGV[1] == '1' then
    body = doc
    sha = redis.sha1hex(doc)
  end
end
local turns = {}
if ARGV[2] ~= '' then
  turns = redis.call('LRANGE', KEYS[2], ARGV[2], ARGV[3])
end
return {exists, body, sha, redis.call('LLEN', KEYS[2]), redis.call('TTL', KEYS[1]), turns}
