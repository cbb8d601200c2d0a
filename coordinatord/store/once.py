"""Exactly-once scripts: a write the daemon resends after a lost reply is applied once.

The daemon resends a command whose reply it did not get: redis-py's retries (a broken connection,
a failover; ``backend.retries``), the store's own fall-back from a broken direct connection to
redis-py's path, the Upstash store's retries of a failed HTTP request, a Cluster's redirections.
When the server had applied the command and only the reply was lost, a second application of a
non-idempotent script would complete two task steps, store two turns or count a rate-limit hit
twice. So every script that changes state is wrapped here, and every invocation of it carries a
write id (:func:`coordinatord.call_ids.next_write_id`) fixed before the first send:

- the caller appends one KEY, the write's record (:func:`coordinatord.keyspace.write_record_key`:
  the hash tag of the script's first key, so the same slot on a Cluster), and one ARGV, the
  record's TTL (:func:`coordinatord.keyspace.write_record_ttl_s`);
- the wrapper takes both off before the script's own code runs (it sees ``KEYS`` and ``ARGV`` as
  it always did: local copies without the last entry, not the server's tables changed in place,
  which any Lua engine allows);
- a record already there is the reply of this very write, sent before: it is decoded and
  returned, and nothing else runs;
- otherwise the script's code runs as a function, and its reply is encoded and stored as the
  record (``SET ... EX``) before it is returned. Both happen in one script call, so they are
  applied (and persisted, replicated) together or not at all. A script that raises records
  nothing: its error reaches the caller, and a resend runs it again.

The encoding is our own (a few lines of Lua string functions, so nothing depends on the cjson or
cmsgpack a server may or may not ship): it keeps exactly what Redis turns a Lua value into for a
RESP2 reply — strings (binary-safe), numbers (``%.17g``: every double round-trips, where cjson
keeps 14 digits; Redis then truncates the number to an integer the same way both times), ``true``,
``false`` and ``nil`` (a nil reply), arrays to their first ``nil`` (nested to any depth), a
status (``{ok = ...}``) and an error reply (``{err = ...}``). The replay's reply is therefore the
first one, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinatord.call_ids import next_write_id
from coordinatord.keyspace import write_record_key
from coordinatord.store.interface import Arg

_PRELUDE = """\
-- coordinatord exactly-once wrapper (coordinatord/store/once.py): the last KEY is this write's
-- record, the last ARGV its TTL (s). The script below sees KEYS and ARGV without them.
local __once_key, __once_ttl = KEYS[#KEYS], ARGV[#ARGV]
local function __once_decode(text)
  local at = 1
  local function value()
    local tag = string.sub(text, at, at)
    if tag == 'f' then at = at + 1 return false end
    if tag == 't' then at = at + 1 return true end
    local colon = string.find(text, ':', at + 1, true)
    local head = string.sub(text, at + 1, colon - 1)
    at = colon + 1
    if tag == 'n' then return tonumber(head) end
    local size = tonumber(head)
    if tag == 'a' then
      local items = {}
      for i = 1, size do items[i] = value() end
      return items
    end
    local body = string.sub(text, at, at + size - 1)
    at = at + size
    if tag == 's' then return body end
    if tag == 'o' then return {ok = body} end
    return {err = body}
  end
  return value()
end
local __once_seen = redis.call('GET', __once_key)
if __once_seen then return __once_decode(__once_seen) end
local function __once_encode(value, out)
  local kind = type(value)
  if kind == 'string' then
    out[#out + 1] = 's' .. #value .. ':'
    out[#out + 1] = value
  elseif kind == 'number' then
    out[#out + 1] = 'n' .. string.format('%.17g', value) .. ':'
  elseif kind == 'table' then
    if type(value.err) == 'string' then
      out[#out + 1] = 'e' .. #value.err .. ':'
      out[#out + 1] = value.err
    elseif type(value.ok) == 'string' then
      out[#out + 1] = 'o' .. #value.ok .. ':'
      out[#out + 1] = value.ok
    else
      local n = 0
      while value[n + 1] ~= nil do n = n + 1 end
      out[#out + 1] = 'a' .. n .. ':'
      for i = 1, n do __once_encode(value[i], out) end
    end
  elseif value == true then
    out[#out + 1] = 't'
  else
    out[#out + 1] = 'f'
  end
end
local function __once_without_last(list)
  local copy = {}
  for i = 1, #list - 1 do copy[i] = list[i] end
  return copy
end
local KEYS, ARGV = __once_without_last(KEYS), __once_without_last(ARGV)
local __once_reply = (function()
"""

_EPILOGUE = """
end)()
local __once_out = {}
__once_encode(__once_reply, __once_out)
redis.call('SET', __once_key, table.concat(__once_out), 'EX', __once_ttl)
return __once_reply
"""


def exactly_once_source(body: str) -> str:
    """The script ``body`` wrapped to record its reply under the write id its caller adds (see
    the module). ``body`` is an ordinary script: it may define local functions and ``return``
    at its top level; it must not use the chunk's ``...`` (no script does: Redis passes none)."""
    return _PRELUDE + body + _EPILOGUE


def with_write_record(keys: Sequence[str], args: Sequence[Arg], ttl_s: int) -> tuple[list[str], list[Arg]]:
    """``keys`` and ``args`` of one invocation of an exactly-once script, with its write's record
    and TTL appended: called once per invocation, before the first send, so that every resend of
    it carries the same record key."""
    if not keys:
        raise ValueError("an exactly-once script needs a key: its record goes in that key's slot")
    return [*keys, write_record_key(keys[0], next_write_id())], [*args, ttl_s]
