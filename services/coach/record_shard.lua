-- Record what one coach tick did in one shard: the learners coached (with the time) in the
-- shard's coached set, pruned to the coverage window; the fast lane's automatic members; and the
-- pass advances of the learners training answered for in the shard's queue (ZADD XX INCR: a
-- learner the commit script removed meanwhile, because it became ready, is not re-added).
-- Fenced: applied only while the shard's fence still holds the caller's token
-- (shared/shard_leases.py), so a replica that lost the shard during a stall writes nothing for it.
-- One script: the check and the writes are atomic, and every key is in the shard's slot.
--
-- Automatic fast-lane members (KEYS[4], learner -> entry time ms): a member while its entry is
-- less than `window` old, then cooling down (kept, so not re-admitted) for another `window`, then
-- pruned here; so the set holds at most 2 x cap entries (every entry of the cooling half was a
-- member at the same instant, `window` ago). Learners a round made ready leave at once. A close
-- learner is admitted only while it is still queued (not ready meanwhile), neither pinned in
-- (KEYS[5], it is in the lane anyway) nor pinned out (KEYS[6]), not already in the set, and while
-- fewer than `cap` members are in: the count and the admission are one atomic step.
-- KEYS: 1 the shard's coach fence, 2 its coach queue, 3 its coached set, 4 its automatic
--       fast-lane members, 5 its fast-lane pins, 6 its fast-lane exclusions
-- ARGV: 1 fencing token ('' = unfenced caller), 2 now (epoch ms), 3 prune coached before (ms),
--       4 the fast lane's window (ms, >= 1), 5 cap on automatic members (0: admit nobody),
--       6 n = coached learners, 7 m = learners made ready, 8 c = close learners,
--       9..8+n the coached, then m ready, then c close, then pairs (learner, pass increment).
-- Returns 1 when written, -1 when a newer lease holder exists (nothing written), or an
-- `INVALID record_shard: …` error reply, having written nothing (every argument is checked
-- before the first write).
local FIXED = 8
local function invalid(what)
  return redis.error_reply('INVALID record_shard: ' .. what)
end
if #ARGV < FIXED then return invalid('expected at least ' .. FIXED .. ' arguments') end
if ARGV[1] ~= '' and not string.match(ARGV[1], '^%d+$') then return invalid('fencing token') end
if not string.match(ARGV[2], '^%d+$') then return invalid('now must be epoch ms') end
if not string.match(ARGV[3], '^%-?%d+$') then return invalid('prune bound must be ms') end
if not string.match(ARGV[4], '^%d+$') or tonumber(ARGV[4]) < 1 then
  return invalid('window must be positive ms')
end
for i = 5, 8 do
  if not string.match(ARGV[i], '^%d+$') then return invalid('counts must be integers') end
end
local now, window, cap = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n, m, c = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ready_from, close_from = FIXED + n + 1, FIXED + n + m + 1
local pairs_from = FIXED + n + m + c + 1
local rest = #ARGV - pairs_from + 1
if rest < 0 or rest % 2 ~= 0 then return invalid('advances must be learner/increment pairs') end
for i = pairs_from + 1, #ARGV, 2 do
  local inc = tonumber(ARGV[i])
  if inc == nil or inc ~= inc or inc <= 0 or inc > 1000 then return invalid('pass increment') end
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
for i = FIXED + 1, FIXED + n do
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[i])
end
-- Pruned every tick, so the set holds about one coverage window of coached learners.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])

redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.0f', now - 2 * window))
for i = ready_from, close_from - 1 do
  redis.call('ZREM', KEYS[4], ARGV[i])
end
if cap > 0 and c > 0 then
  local members = redis.call('ZCOUNT', KEYS[4], '(' .. string.format('%.0f', now - window), '+inf')
  for i = close_from, pairs_from - 1 do
    if members >= cap then break end
    local learner = ARGV[i]
    if redis.call('ZSCORE', KEYS[2], learner) ~= false
        and redis.call('ZSCORE', KEYS[4], learner) == false
        and redis.call('SISMEMBER', KEYS[5], learner) == 0
        and redis.call('SISMEMBER', KEYS[6], learner) == 0 then
      redis.call('ZADD', KEYS[4], ARGV[2], learner)
      members = members + 1
    end
  end
end

for i = pairs_from, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], 'XX', 'INCR', ARGV[i + 1], ARGV[i])
end
return 1
