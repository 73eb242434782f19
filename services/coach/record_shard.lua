-- Record what one coach tick did in one shard: the learners coached (with the time) in the
-- shard's coached set, pruned to the coverage window, and the pass advances of the learners
-- training answered for in the shard's queue (ZADD XX INCR: a learner the commit script removed
-- meanwhile, because it became ready, is not re-added). Fenced: applied only while the shard's
-- fence still holds the caller's token (shared/shard_leases.py), so a replica that lost the
-- shard during a stall writes nothing for it. One script: the check and the writes are atomic,
-- and every key is in the shard's slot.
-- KEYS: 1 the shard's coach fence, 2 its coach queue, 3 its coached set
-- ARGV: 1 fencing token ('' = unfenced caller), 2 now (epoch ms), 3 prune coached before (ms),
--       4 n = number of coached learners, 5..4+n the coached learners,
--       then pairs (learner, pass increment) for the advances.
-- Returns 1 when written, -1 when a newer lease holder exists (nothing written), or an
-- `INVALID record_shard: …` error reply, having written nothing (every argument is checked
-- before the first write).
local function invalid(what)
  return redis.error_reply('INVALID record_shard: ' .. what)
end
if #ARGV < 4 then return invalid('expected at least 4 arguments') end
if ARGV[1] ~= '' and not string.match(ARGV[1], '^%d+$') then return invalid('fencing token') end
if not string.match(ARGV[2], '^%d+$') then return invalid('now must be epoch ms') end
if not string.match(ARGV[3], '^%-?%d+$') then return invalid('prune bound must be ms') end
if not string.match(ARGV[4], '^%d+$') then return invalid('coached count') end
local n = tonumber(ARGV[4])
local rest = #ARGV - 4 - n
if rest < 0 or rest % 2 ~= 0 then return invalid('advances must be learner/increment pairs') end
for i = 5 + n + 1, #ARGV, 2 do
  local inc = tonumber(ARGV[i])
  if inc == nil or inc ~= inc or inc <= 0 or inc > 1000 then return invalid('pass increment') end
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
for i = 5, 4 + n do
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[i])
end
-- Pruned every tick, so the set holds about one coverage window of coached learners.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
for i = 5 + n, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], 'XX', 'INCR', ARGV[i + 1], ARGV[i])
end
return 1
