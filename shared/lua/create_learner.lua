-- Create a learner if it does not exist, and index it. Atomic: the state, the paging index, the
-- region count and (for an active learner) the coach queue change together or not at all. Every
-- key is in the learner's shard (one hash tag): the indexes and counters are the shard's own, and
-- the fleet's figures are their sums (shared/fleet_totals.py).
-- KEYS: 1 state, 2 the shard's learners index, 3 the shard's learners seq, 4 the shard's regions
--       hash, 5 the shard's coach queue
-- ARGV: 1 learner id, 2 encoded state, 3 region, 4 active (1/0)
-- Returns the learner's creation sequence number, or 0 when it already existed, or an
-- `INVALID create_learner: …` error reply, having written nothing (every argument is checked
-- before the first write: Redis does not roll a failed script back).
local function invalid(what)
  return redis.error_reply('INVALID create_learner: ' .. what)
end
if #ARGV ~= 4 then return invalid('expected 4 arguments, got ' .. #ARGV) end
if #ARGV[1] > 64 or not string.match(ARGV[1], '^[%w_.%-]+$') then return invalid('learner id') end
if ARGV[2] == '' or not pcall(cjson.decode, ARGV[2]) then return invalid('state is not JSON') end
if #ARGV[3] > 32 or not string.match(ARGV[3], '^[%w_.%-]+$') then return invalid('region') end
if ARGV[4] ~= '1' and ARGV[4] ~= '0' then return invalid('active must be 1 or 0') end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', 1, 's', ARGV[2], 'r', '0')
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if ARGV[4] == '1' then
  -- A newcomer joins at the queue's current virtual time, so it neither waits behind nor
  -- jumps ahead of learners already queued (stride scheduling, see services/coach).
  local head = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[5], 'NX', head[2] or 0, ARGV[1])
end
return seq
