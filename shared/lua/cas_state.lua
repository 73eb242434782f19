-- Compare-and-set of a learner's state, for every write other than a training round
-- (training start/reset/settings, meta effects). Atomic: the write happens only if the version
-- is still the one the caller read, so concurrent writers cannot lose each other's updates.
-- KEYS: 1 state, 2 coach queue, 3 coach ready (the queue and ready set of the learner's shard:
--       one hash tag, one Cluster slot)
-- ARGV: 1 expected version, 2 new encoded state, 3 learner id,
--       4 index op: 'keep' | 'queue' (needs coaching again: not ready, queued) | 'unqueue'
-- Returns {1, new version} | {0, current version, current state} on conflict | {-1} if missing
--       | an `INVALID cas_state: …` error reply, having written nothing.
-- Every argument is checked before the first write (Redis does not roll a failed script back).
local function invalid(what)
  return redis.error_reply('INVALID cas_state: ' .. what)
end
if #ARGV ~= 4 then return invalid('expected 4 arguments, got ' .. #ARGV) end
if not string.match(ARGV[1], '^%d+$') or #ARGV[1] > 15 then return invalid('expected version') end
if ARGV[2] == '' or not pcall(cjson.decode, ARGV[2]) then return invalid('state is not JSON') end
if #ARGV[3] > 64 or not string.match(ARGV[3], '^[%w_.%-]+$') then return invalid('learner id') end
if ARGV[4] ~= 'keep' and ARGV[4] ~= 'queue' and ARGV[4] ~= 'unqueue' then
  return invalid('index op')
end
local cur = redis.call('HGET', KEYS[1], 'v')
if cur == false then
  return {-1}
end
if cur ~= ARGV[1] then
  return {0, cur, redis.call('HGET', KEYS[1], 's')}
end
local newv = tonumber(cur) + 1
-- Every check above is a read; the writes start here.
redis.call('HSET', KEYS[1], 'v', newv, 's', ARGV[2])
local off = redis.call('HGET', KEYS[1], 'inactive')
if off then
  -- A deactivated learner stays out of the coach's indexes: its placement to restore on
  -- reactivation (`q` queued, `-` neither) follows the op instead (training's activation.lua).
  if ARGV[4] == 'queue' then
    redis.call('HSET', KEYS[1], 'r', '0', 'inactive', 'q')
  elseif ARGV[4] == 'unqueue' then
    redis.call('HSET', KEYS[1], 'inactive', '-')
  end
elseif ARGV[4] == 'queue' then
  redis.call('HSET', KEYS[1], 'r', '0')
  redis.call('ZREM', KEYS[3], ARGV[3])
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[2], 'NX', head[2] or 0, ARGV[3])
elseif ARGV[4] == 'unqueue' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
return {1, newv}
