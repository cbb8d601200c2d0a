-- Shared fragment of the file-reservation scripts (put before each): the reservation document,
-- and whether two path globs overlap: the same algorithm as coordinatord/pathglob.py, which
-- documents the syntax (a test pins both to the same answers). Globs arrive normalized by the
-- service (pathglob.normalize). Lua strings are bytes, so each segment is decoded from UTF-8
-- into code points first: '?' and classes then match one character, as in Python.
local GLOB_SLASH, GLOB_LO, GLOB_HI, GLOB_A = 47, 32, 1114111, 97

local function glob_codepoints(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, cp = 1, c
    if c >= 240 then len, cp = 4, c - 240
    elseif c >= 224 then len, cp = 3, c - 224
    elseif c >= 192 then len, cp = 2, c - 192 end
    for k = 1, len - 1 do
      cp = cp * 64 + (string.byte(s, i + k) or 128) - 128
    end
    out[#out + 1] = cp
    i = i + len
  end
  return out
end

-- A token: {star = true}, or {neg = bool, r = {lo1, hi1, lo2, hi2, ...}}.
local GLOB_STAR = {star = true}
local GLOB_ANY = {neg = true, r = {}}
-- What a star offers the other side's item in a joint move: any character, or any segment.
local GLOB_ANY_ITEM = {}
local function glob_literal(cp) return {neg = false, r = {cp, cp}} end

local function glob_class(cps, start)
  local j, n = start + 1, #cps
  local neg = j <= n and (cps[j] == 33 or cps[j] == 94) -- '!' or '^'
  if neg then j = j + 1 end
  local r, first = {}, true
  local function class_char(k)
    if cps[k] == 92 and k + 1 <= n then return cps[k + 1], k + 2 end -- backslash
    return cps[k], k + 1
  end
  while j <= n and (cps[j] ~= 93 or first) do -- ']'
    first = false
    local lo
    lo, j = class_char(j)
    local hi = lo
    if j + 1 <= n and cps[j] == 45 and cps[j + 1] ~= 93 then -- '-' not before ']'
      hi, j = class_char(j + 1)
    end
    r[#r + 1] = lo
    r[#r + 1] = hi
  end
  if j > n then return nil, start + 1 end
  return {neg = neg, r = r}, j + 1
end

local function glob_tokens(segment)
  local cps, tokens, k = glob_codepoints(segment), {}, 1
  local n = #cps
  while k <= n do
    local c = cps[k]
    if c == 42 then -- '*'
      if tokens[#tokens] ~= GLOB_STAR then tokens[#tokens + 1] = GLOB_STAR end
      k = k + 1
    elseif c == 63 then -- '?'
      tokens[#tokens + 1] = GLOB_ANY
      k = k + 1
    elseif c == 92 and k + 1 <= n then
      tokens[#tokens + 1] = glob_literal(cps[k + 1])
      k = k + 2
    elseif c == 91 then -- '['
      local class, after = glob_class(cps, k)
      tokens[#tokens + 1] = class or glob_literal(91)
      k = after
    else
      tokens[#tokens + 1] = glob_literal(c)
      k = k + 1
    end
  end
  return tokens
end

local glob_parsed = {}
local function glob_parse(pattern)
  local segments = glob_parsed[pattern]
  if segments == nil then
    segments = {}
    for segment in string.gmatch(pattern, '[^/]+') do
      if segment == '**' then
        segments[#segments + 1] = GLOB_STAR
      else
        segments[#segments + 1] = glob_tokens(segment)
      end
    end
    glob_parsed[pattern] = segments
  end
  return segments
end

-- Is there a character in the ranges r (flat), within the universe, in none of the flat range
-- lists of `excluded`, and not '/'?
local function glob_first_outside(r, excluded)
  for k = 1, #r, 2 do
    local c, hi = math.max(r[k], GLOB_LO), math.min(r[k + 1], GLOB_HI)
    local moved = true
    while c <= hi and moved do
      moved = false
      if c == GLOB_SLASH then c, moved = c + 1, true end
      for _, ex in ipairs(excluded) do
        for e = 1, #ex, 2 do
          if ex[e] <= c and c <= ex[e + 1] then c, moved = ex[e + 1] + 1, true end
        end
      end
    end
    if c <= hi then return true end
  end
  return false
end

local function glob_sets_meet(a, b)
  if a.neg and b.neg then return glob_first_outside({GLOB_A, GLOB_HI, GLOB_LO, GLOB_HI}, {a.r, b.r}) end
  if a.neg then return glob_first_outside(b.r, {a.r}) end
  if b.neg then return glob_first_outside(a.r, {b.r}) end
  for x = 1, #a.r, 2 do
    for y = 1, #b.r, 2 do
      local lo, hi = math.max(a.r[x], b.r[y]), math.min(a.r[x + 1], b.r[y + 1])
      if lo <= hi and glob_first_outside({lo, hi}, {}) then return true end
    end
  end
  return false
end

-- The product automaton of two token lists (or segment lists): reach[i][j] says whether state
-- (i, j) reaches the end. `meet(x, y)` decides a joint move over two non-star items.
local function glob_product(p, q, meet)
  local n, m = #p, #q
  local reach = {}
  for i = n + 1, 1, -1 do
    reach[i] = {}
    for j = m + 1, 1, -1 do
      local ok = false
      if i == n + 1 and j == m + 1 then
        ok = true
      else
        local p_star = i <= n and p[i] == GLOB_STAR
        local q_star = j <= m and q[j] == GLOB_STAR
        if p_star and reach[i + 1][j] then ok = true
        elseif q_star and reach[i][j + 1] then ok = true
        elseif i <= n and j <= m and not (p_star and q_star) then
          local ni, nj = i + 1, j + 1
          if p_star then ni = i end
          if q_star then nj = j end
          if reach[ni][nj] then
            ok = meet(p_star and GLOB_ANY_ITEM or p[i], q_star and GLOB_ANY_ITEM or q[j])
          end
        end
      end
      reach[i][j] = ok
    end
  end
  return reach[1][1]
end

local function glob_segments_meet(a, b)
  -- A star against the other side's item: any character (any segment) is fine for it.
  if a == GLOB_ANY_ITEM then a = {GLOB_STAR} end
  if b == GLOB_ANY_ITEM then b = {GLOB_STAR} end
  return glob_product(a, b, function(x, y)
    if x == GLOB_ANY_ITEM then x = GLOB_ANY end
    if y == GLOB_ANY_ITEM then y = GLOB_ANY end
    return glob_sets_meet(x, y)
  end)
end

local glob_memo = {}
local function globs_overlap(p, q)
  if p == q then return true end
  local key = p .. '\0' .. q
  local known = glob_memo[key]
  if known == nil then
    known = glob_product(glob_parse(p), glob_parse(q), glob_segments_meet)
    glob_memo[key] = known
  end
  return known
end

-- --- Reservation documents: one hash per project, reservation id -> JSON document ---------------

local function files_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Built by hand: cjson prints numbers with 14 significant digits, fencing numbers have 16.
local function files_doc(id, agent, mode, paths_json, reason, fencing, acquired_ms, expires_ms)
  return '{"id":' .. cjson.encode(id) .. ',"agent":' .. cjson.encode(agent)
    .. ',"mode":' .. cjson.encode(mode) .. ',"paths":' .. paths_json
    .. ',"reason":' .. cjson.encode(reason) .. ',"fencing":' .. string.format('%d', fencing)
    .. ',"acquired_at_ms":' .. string.format('%d', acquired_ms)
    .. ',"expires_at_ms":' .. string.format('%d', expires_ms) .. '}'
end

-- The document of a live reservation, or nil (a lapsed one is removed on the way).
local function files_live(hash, id, now_ms)
  local raw = redis.call('HGET', hash, id)
  if not raw then return nil end
  local ok, doc = pcall(cjson.decode, raw)
  if not ok or type(doc) ~= 'table' or (tonumber(doc.expires_at_ms) or 0) <= now_ms then
    redis.call('HDEL', hash, id)
    return nil
  end
  return doc, raw
end

-- The hash must outlive every lease it holds; it never needs to outlive the longest.
local function files_outlive(hash, lease_ms)
  if redis.call('PTTL', hash) < lease_ms then
    redis.call('PEXPIRE', hash, lease_ms)
  end
end
