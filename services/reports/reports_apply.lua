-- Apply a batch of stream entries to the reports aggregates and acknowledge them, in ONE atomic
-- step, so every entry is counted exactly once.
--
-- Why this is exactly-once: an entry read through the consumer group sits in the group's pending
-- list (PEL) until it is XACKed, and XACK happens only here, in the same script that applies the
-- entry's increments. A script runs atomically (nothing else executes in between, and a kill -9
-- of the reports process cannot interrupt it half-way), so at any moment an entry is either
-- "pending and not applied" or "acknowledged and applied". Before applying an entry we therefore
-- ask XPENDING whether it is still pending: if it is not (a redelivery after a crash between the
-- read and this script, a second replica that got the same entry through XAUTOCLAIM, a retry of a
-- batch whose reply was lost), it was already applied and is skipped. This needs no ordering
-- between entries, so claimed stale entries older than the newest applied one are still counted.
--
-- Owned by the reports service: services/reports/apply.py registers it on its Redis client and
-- builds KEYS and ARGV (`build_call`, with the ops of `aggregates.entry_ops`).
-- KEYS (all in the stream's slot: a shard's stream with that shard's aggregates, or the system
--       stream with the `{system}` ones):
--       1 stream, 2 cursor hash (field = ARGV[2] -> last applied id, informational),
--       3.. target keys the ops address (minute hashes, totals, per-service transitions)
-- ARGV: 1 group, 2 cursor field, 3 ttl seconds, 4 number of leading target keys that get the ttl,
--       5 number of entries, then per entry: id, number of ops, then per op four values:
--       op, target index (1 = KEYS[3]), a, b
--   ops: 'i' HINCRBY key a b | 'f' HINCRBYFLOAT key a b | 's' HSET key a b
--        'm' HSET key a b only if b > the current numeric value | 'z' ZADD key a(score) b(member)
-- Returns {applied, skipped}, or an `INVALID reports_apply: …` error reply, having written
-- nothing: Redis does not roll a script back when it fails half-way (a poison batch would
-- re-apply its first entries on every retry), so the whole ARGV layout, every op and every value
-- is checked before the first write, including that no HINCRBY/HINCRBYFLOAT leaves the range in
-- which counters stay exact.
local function invalid(what)
  return redis.error_reply('INVALID reports_apply: ' .. what)
end
local MAX_SAFE = 9007199254740991  -- 2^53 - 1
local function int_arg(x)  -- an integer written in digits (optionally negative), or nil
  if type(x) ~= 'string' or not string.match(x, '^%-?%d+$') or #x > 16 then return nil end
  return tonumber(x)
end
local function finite(x)
  local v = tonumber(x)
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return nil end
  return v
end
local group = ARGV[1]
local ttl = int_arg(ARGV[3])
local n_ttl = int_arg(ARGV[4])
local n = int_arg(ARGV[5])
local n_targets = #KEYS - 2
if group == nil or group == '' or ARGV[2] == nil or ARGV[2] == '' then
  return invalid('group and cursor field')
end
if ttl == nil or ttl < 1 then return invalid('ttl') end
if n_ttl == nil or n_ttl < 0 or n_ttl > n_targets then return invalid('ttl key count') end
if n == nil or n < 0 then return invalid('entry count') end
do
  local at = 6
  -- the sums of this batch's increments per key and field, to check the result's range
  local sums = {}
  for e = 1, n do
    local id, nops = ARGV[at], int_arg(ARGV[at + 1])
    if id == nil or not string.match(id, '^%d+%-%d+$') then return invalid('entry id ' .. e) end
    if nops == nil or nops < 0 then return invalid('op count of entry ' .. e) end
    at = at + 2
    if #ARGV < at + 4 * nops - 1 then return invalid('fewer ops than counted') end
    for _ = 1, nops do
      local op, index, a, b = ARGV[at], int_arg(ARGV[at + 1]), ARGV[at + 2], ARGV[at + 3]
      if index == nil or index < 1 or index > n_targets then return invalid('target index') end
      if op == 'i' or op == 'f' then
        local v
        if op == 'i' then v = int_arg(b) else v = finite(b) end
        if v == nil then return invalid('increment of ' .. op .. ' op') end
        sums[index] = sums[index] or {}
        sums[index][a] = (sums[index][a] or 0) + math.abs(v)
      elseif op == 'm' then
        if finite(b) == nil then return invalid('value of m op') end
      elseif op == 'z' then
        if finite(a) == nil then return invalid('score of z op') end
      elseif op ~= 's' then
        return invalid('unknown op ' .. tostring(op))
      end
      at = at + 4
    end
  end
  if at - 1 ~= #ARGV then return invalid('arguments left over') end
  for index, fields in pairs(sums) do
    for field, sum in pairs(fields) do
      local cur = redis.call('HGET', KEYS[2 + index], field)
      local value = (cur and tonumber(cur)) or 0
      if math.abs(value) + sum > MAX_SAFE then
        return invalid('counter would overflow: ' .. field)
      end
    end
  end
end
-- Every check above is a read; the writes start below.
local pos = 6
local applied, skipped = 0, 0
local ids = {}
-- true when stream id a is newer than b ('ms-seq', compared numerically)
local function newer(a, b)
  if not b then return true end
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not bm then return true end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local last = nil
for _ = 1, n do
  local id = ARGV[pos]
  local nops = tonumber(ARGV[pos + 1])
  pos = pos + 2
  local pending = redis.call('XPENDING', KEYS[1], group, id, id, 1)
  local live = #pending > 0
  if live then
    applied = applied + 1
    if newer(id, last) then last = id end
    table.insert(ids, id)
  else
    skipped = skipped + 1
  end
  for _ = 1, nops do
    if live then
      local op, key, a, b = ARGV[pos], KEYS[2 + tonumber(ARGV[pos + 1])], ARGV[pos + 2], ARGV[pos + 3]
      if op == 'i' then
        redis.call('HINCRBY', key, a, b)
      elseif op == 'f' then
        redis.call('HINCRBYFLOAT', key, a, b)
      elseif op == 's' then
        redis.call('HSET', key, a, b)
      elseif op == 'm' then
        local cur = tonumber(redis.call('HGET', key, a) or '')
        if cur == nil or tonumber(b) > cur then
          redis.call('HSET', key, a, b)
        end
      elseif op == 'z' then
        redis.call('ZADD', key, a, b)
      end
    end
    pos = pos + 4
  end
end
if #ids > 0 then
  redis.call('XACK', KEYS[1], group, unpack(ids))
  local prev = redis.call('HGET', KEYS[2], ARGV[2])
  if newer(last, prev or nil) then
    redis.call('HSET', KEYS[2], ARGV[2], last)
  end
  for k = 1, n_ttl do
    if redis.call('EXISTS', KEYS[2 + k]) == 1 then
      redis.call('EXPIRE', KEYS[2 + k], ttl)
    end
  end
end
return {applied, skipped}
