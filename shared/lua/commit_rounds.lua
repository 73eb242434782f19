-- Commit one or more training rounds of ONE learner. This is the fleet's central atomic step:
-- the fencing check, the version check, the new state, the round ids, the learner's history, the
-- rounds stream events, the readiness flag and the coach's queue/ready indexes all change in one
-- script, so a round is either fully recorded or not at all. Every key is in the learner's shard
-- (one hash tag, one Cluster slot); nothing is read from another slot: the readiness thresholds
-- come as arguments.
-- Round ids: `ARGV[15] + n`, n from INCRBY on the shard's own counter (KEYS[3]), where ARGV[15] is
-- the shard's base (shard * ROUND_ID_STRIDE, shared/keys.py): unique across the fleet without a
-- fleet-wide counter, increasing for the learner (it always commits in this shard), consecutive
-- within this call.
-- KEYS: 1 state, 2 history (one string, shared/history.py), 3 the shard's round seq, 4 the shard's rounds stream,
--       5 the shard's coach fence, 6 coach queue, 7 coach ready, 8 meta stream,
--       9 (only with an idempotency key) the idempotency record, in the learner's slot
--       (keys.learner_idempotency)
-- ARGV: 1 expected version, 2 new encoded state, 3 learner id, 4 region, 5 average mastery,
--       6 domains below target, 7 next review (epoch ms), 8 and 9 the readiness thresholds
--       (minAvgMastery, maxBelow80: the coach's settings as training last read them),
--       10 history cap, 11 n rounds (1..MAX_ROUNDS),
--       12 incarnation guard or '' (none): a substring the current encoded state must contain
--          (training passes the learner's `"sd":<seed>,`). A caller that computed from a cached
--          state passes it, so a learner deleted and re-created (its version restarts at 1)
--          cannot be overwritten by a stale copy whose version happens to match,
--       13 idempotency request hash or '' (none; then KEYS has 8 entries, else 9),
--       14 idempotency record lifetime in ms,
--       15 the shard's round id base (a non-negative integer),
--       16 fencing token or '' (unfenced: a client's own round, a boost): with a token the
--          commit happens only while GET KEYS[5] equals it (the coach replica still holds the
--          shard's lease it acquired with that token),
--       17 the history's new anchor (shared/history.py; '' keeps the stored one),
--       then per round i (1..n): 16+2i history entry: a packed body (ASCII, first byte below
--                                64) or a JSON object (a non-empty one), its round id added
--                                here, 17+2i round duration in ms.
--       So #ARGV is exactly 17 + 2n.
-- History: one string, newest record first (layout in shared/history.py, whose `prepend` is
-- this script's reference in Python): the new records go in front with their round id gaps,
-- the anchor and the record count are replaced and the string is cut back to `history cap`
-- records once it holds a tenth more, in this script, so a round and its history record are
-- one atomic step.
-- Returns {1, new version, first round id, ready 0/1, became ready 0/1}
--       | {0, current version, current state} on a version conflict | {-1} if the learner is gone
--       | {2, version, first round id, ready 0/1, became ready 0/1, n} when the idempotency record
--         says this request was committed already (nothing is written)
--       | {-2, n} when the record belongs to a different request (nothing is written)
--       | {-3, current fence} when the fencing token is not the shard's current one (nothing is
--         written, nothing else is read).
--       | {-4} when the learner is deactivated (its state hash has `inactive`: a throttle keeps
--         it, uncoached, until reactivated; nothing is written). Checked here, in the step that
--         would re-queue it, so no round committed after the deactivation can bring it back.
-- Bad arguments are an error reply prefixed `commit_rounds:`, raised before any write: Redis does
-- not roll a script back, so every input is validated first and a refused call changes nothing.
--
-- Readiness record (the meta trigger's source of truth): when a commit makes the learner ready,
-- the state hash also gets `rr` (the round id) and `rt` (the server's time, epoch ms) in the same
-- HSET; meta computes the trigger delay from these, never from what a caller sends.
-- Streams are not trimmed here: a trimmer cuts them below what every consumer group has
-- acknowledged, so an event nobody has read cannot be lost to a length cap.
--
-- Ids reach 10^15 and more: Lua's `..` and tostring print such numbers as `1e+15`, so every id
-- written into a string goes through `id()` (exact: integers below 2^53 are exact doubles).
local MAX_ROUNDS = 1000
local FIXED = 17

local function id(x)
  return string.format('%.0f', x)
end

local function bad(what)
  return redis.error_reply('commit_rounds: ' .. what)
end

local function number(i)
  if ARGV[i] == nil then
    return nil
  end
  local x = tonumber(ARGV[i])
  if x == nil or x ~= x or x == math.huge or x == -math.huge then
    return nil
  end
  return x
end

-- Varints of the history string: 6 bits a byte, low first, bit 6 set when more follow, so
-- every byte stays ASCII (shared/history.py). Integers up to 2^53 are exact doubles.
local function varint(v)
  local out = {}
  while v >= 64 do
    local low = v % 64
    out[#out + 1] = string.char(64 + low)
    v = (v - low) / 64
  end
  out[#out + 1] = string.char(v)
  return table.concat(out)
end

local function read_varint(s, pos)
  local v, mul = 0, 1
  while true do
    local b = string.byte(s, pos)
    if b == nil then
      return nil, pos
    end
    pos = pos + 1
    if b >= 64 then
      v = v + (b - 64) * mul
      mul = mul * 64
    else
      return v + b * mul, pos
    end
  end
end

-- ---- validation: every input, before the first write ------------------------------------------
local n = number(11)
if n == nil or n ~= math.floor(n) or n < 1 or n > MAX_ROUNDS then
  return bad('ARGV[11] (n rounds) must be an integer in 1..' .. MAX_ROUNDS)
end
if #ARGV ~= FIXED + 2 * n then
  return bad('expected ' .. (FIXED + 2 * n) .. ' arguments for ' .. n .. ' rounds, got ' .. #ARGV)
end
if not string.match(ARGV[1], '^%d+$') then
  return bad('ARGV[1] (expected version) must be a non-negative integer')
end
if string.sub(ARGV[2], 1, 1) ~= '{' or ARGV[3] == '' or ARGV[4] == '' then
  return bad('ARGV[2..4] (state, learner, region) must be given')
end
for i = 5, 10 do
  if number(i) == nil then
    return bad('ARGV[' .. i .. '] must be a finite number')
  end
end
local history_cap = number(10)
if history_cap < 1 or history_cap ~= math.floor(history_cap) then
  return bad('ARGV[10] (history cap) must be a positive integer')
end
local idem = ARGV[13]
if (idem ~= '') ~= (#KEYS == 9) or #KEYS < 8 or #KEYS > 9 then
  return bad('an idempotency hash needs KEYS[9], and KEYS[9] needs the hash')
end
local idem_ttl = number(14)
if idem ~= '' and (idem_ttl == nil or idem_ttl < 1 or idem_ttl ~= math.floor(idem_ttl)) then
  return bad('ARGV[14] (idempotency lifetime ms) must be a positive integer')
end
for i = 1, n do
  local entry = ARGV[FIXED + 2 * i - 1]
  if string.sub(entry, 1, 1) == '{' then
    local okj, decoded = pcall(cjson.decode, entry)
    if not okj or type(decoded) ~= 'table' or next(decoded) == nil then
      return bad('round ' .. i .. ': the history entry must be a non-empty JSON object')
    end
  elseif entry == '' or string.byte(entry, 1) >= 64 or string.find(entry, '[\128-\255]') then
    return bad('round ' .. i .. ': the history entry must be a packed body or a JSON object')
  end
  if number(FIXED + 2 * i) == nil then
    return bad('round ' .. i .. ': the duration must be a finite number')
  end
end
if not string.match(ARGV[15], '^%d+$') or #ARGV[15] > 16 then
  return bad('ARGV[15] (round id base) must be a non-negative integer')
end
local base = tonumber(ARGV[15])
local fence = ARGV[16]
if fence ~= '' and (not string.match(fence, '^%d+$') or #fence > 18) then
  return bad('ARGV[16] (fencing token) must be a non-negative integer or empty')
end
local guard = ARGV[12]
local anchor = ARGV[17]
if string.find(anchor, '[\128-\255]') then
  return bad('ARGV[17] (history anchor) must be ASCII')
end

-- ---- reads and checks ----------------------------------------------------------------------
if fence ~= '' then
  -- First: a writer that lost the shard's lease learns nothing else and writes nothing.
  local current = redis.call('GET', KEYS[5])
  if current ~= fence then
    return {-3, current or ''}
  end
end
local cur = redis.call('HGET', KEYS[1], 'v')
if cur == false then
  return {-1}
end
if idem ~= '' then
  -- The record: "<request hash> <version> <first round id> <n> <ready> <became>". A record whose
  -- version is above the current one was left by an earlier incarnation of this learner id
  -- (deleted and re-created: versions restart at 1), so it no longer answers for this learner.
  local rec = redis.call('GET', KEYS[9])
  if rec then
    local h, v, first, cnt, r, b = string.match(rec, '^(%S+) (%d+) (%d+) (%d+) (%d) (%d)$')
    if h and tonumber(v) <= tonumber(cur) then
      if h ~= idem then
        return {-2, tonumber(cnt)}
      end
      return {2, v, tonumber(first), tonumber(r), tonumber(b), tonumber(cnt)}
    end
  end
end
if redis.call('HEXISTS', KEYS[1], 'inactive') == 1 then
  return {-4}
end
if cur ~= ARGV[1] then
  return {0, cur, redis.call('HGET', KEYS[1], 's')}
end
-- The stored history, read (and checked) before any write: its newest round id, its anchor and
-- where its records start.
local old = redis.call('GET', KEYS[2])
local old_head, old_count, old_anchor, old_start = 0, 0, '', nil
if old then
  if string.sub(old, 1, 1) ~= 'h' then
    return bad('the stored history is not a history string')
  end
  local alen
  old_head, old_start = read_varint(old, 2)
  if old_head ~= nil then
    old_count, old_start = read_varint(old, old_start)
  end
  if old_count ~= nil then
    alen, old_start = read_varint(old, old_start)
  end
  if old_head == nil or old_count == nil or alen == nil or old_start + alen > #old + 1 then
    return bad('the stored history has a broken header')
  end
  old_anchor = string.sub(old, old_start, old_start + alen - 1)
  old_start = old_start + alen
end
if guard ~= '' then
  local s = redis.call('HGET', KEYS[1], 's')
  if not string.find(s, guard, 1, true) then
    return {0, cur, s}
  end
end
-- The events' ts is the server's time at commit, not the caller's: the caller's clock was read
-- before it computed the rounds (a whole batch, for the coach), and the meta trigger delay is
-- measured from the commit. TIME before writes is allowed: since Redis 5 scripts are
-- replicated by their effects (the default), so a non-deterministic read cannot diverge replicas.
local t = redis.call('TIME')
local now_ms = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local avg = tonumber(ARGV[5])
local below = tonumber(ARGV[6])
local min_avg = tonumber(ARGV[8])
local max_below = tonumber(ARGV[9])
local ready = avg >= min_avg and below <= max_below
local was_ready = redis.call('HGET', KEYS[1], 'r') == '1'
local became = ready and not was_ready

-- ---- writes --------------------------------------------------------------------------------
local last = base + redis.call('INCRBY', KEYS[3], n)
local first = last - n + 1
local newv = tonumber(cur) + 1
if became then
  redis.call('HSET', KEYS[1], 'v', newv, 's', ARGV[2], 'r', '1', 'rr', id(last), 'rt', now_ms)
else
  redis.call('HSET', KEYS[1], 'v', newv, 's', ARGV[2], 'r', ready and '1' or '0')
end
local records = {}
for i = n, math.max(1, n - history_cap + 1), -1 do
  local gap = 1
  if i == 1 then
    gap = old_head > 0 and first - old_head or 0
  end
  -- zigzag: a gap is negative only if a caller changed the round id base (tests do)
  local rest = varint(gap >= 0 and gap * 2 or -gap * 2 - 1) .. ARGV[FIXED + 2 * i - 1]
  records[#records + 1] = varint(#rest) .. rest
end
local count = #records
if old and count < history_cap then
  -- The stored records are kept whole while the string holds at most `history_cap` plus a
  -- tenth; past that it is cut back to `history_cap` records, walking their lengths once. So
  -- a commit usually copies the string without reading its records (the walk is most of the
  -- script's time), at the cost of up to a tenth more records kept (never answered: readers
  -- stop at the history length).
  if count + old_count <= history_cap + math.floor(history_cap / 10) then
    records[#records + 1] = string.sub(old, old_start)
    count = count + old_count
  else
    local pos, left = old_start, history_cap - count
    while left > 0 do
      local b = string.byte(old, pos)
      if b == nil then
        break
      elseif b < 64 then
        pos = pos + 1 + b
      else
        local len, at = read_varint(old, pos)
        pos = at + len
      end
      left = left - 1
    end
    records[#records + 1] = string.sub(old, old_start, pos - 1)
    count = history_cap - left
  end
end
if anchor == '' then
  anchor = old_anchor
end
redis.call('SET', KEYS[2],
  'h' .. varint(last) .. varint(count) .. varint(#anchor) .. anchor .. table.concat(records))
for i = 1, n do
  redis.call('XADD', KEYS[4], '*',
    'round', id(first + i - 1), 'learner', ARGV[3], 'region', ARGV[4], 'ts', now_ms,
    'ms', ARGV[FIXED + 2 * i], 'avg', ARGV[5])
end
if ready then
  redis.call('ZREM', KEYS[6], ARGV[3])
  redis.call('ZADD', KEYS[7], ARGV[7], ARGV[3])
  if became then
    redis.call('XADD', KEYS[8], '*',
      'type', 'ready', 'learner', ARGV[3], 'round', id(last), 'ts', now_ms,
      'avg', ARGV[5], 'below', ARGV[6])
  end
else
  redis.call('ZREM', KEYS[7], ARGV[3])
  if redis.call('ZSCORE', KEYS[6], ARGV[3]) == false then
    local head = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
    redis.call('ZADD', KEYS[6], head[2] or 0, ARGV[3])
  end
end
if idem ~= '' then
  -- Only ids, version and flags are kept, not the answer: the replay rebuilds a compact result.
  redis.call('SET', KEYS[9],
    idem .. ' ' .. newv .. ' ' .. id(first) .. ' ' .. n .. ' ' .. (ready and 1 or 0) .. ' '
      .. (became and 1 or 0),
    'PX', idem_ttl)
end
return {1, newv, first, ready and 1 or 0, became and 1 or 0}
