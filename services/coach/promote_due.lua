-- Move ready learners whose review is due back into the coach queue (spaced repetition).
-- Atomic: a learner leaves `coach:ready` and joins `coach:queue` in the same step, so it is never
-- in both sets or in neither (a concurrent commit that finds it ready again puts it back in
-- `ready`; one that finds it not ready leaves it queued — either way exactly one index holds it).
-- Fenced: a write of the shard's owner, so it runs only while the shard's fence still holds the
-- caller's token (shared/shard_leases.py). All three keys are one shard's (one hash tag).
-- KEYS: 1 the shard's coach ready, 2 its coach queue, 3 its coach fence
-- ARGV: 1 now (epoch ms), 2 max learners to move, 3 fencing token ('' = unfenced caller)
-- Returns the number of learners moved, -1 when a newer lease holder exists (nothing written),
-- or an `INVALID promote_due: …` error reply, having written nothing (the arguments are
-- checked before the first write).
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if #ARGV ~= 3 or now == nil or not string.match(ARGV[1], '^%d+$') then
  return redis.error_reply('INVALID promote_due: now must be epoch ms')
end
if limit == nil or not string.match(ARGV[2], '^%d+$') or limit < 1 or limit > 100000 then
  return redis.error_reply('INVALID promote_due: limit must be 1..100000')
end
if ARGV[3] ~= '' then
  if not string.match(ARGV[3], '^%d+$') then
    return redis.error_reply('INVALID promote_due: fencing token')
  end
  if redis.call('GET', KEYS[3]) ~= ARGV[3] then
    return -1
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
if #due == 0 then
  return 0
end
-- They join at the queue's head pass, like newcomers: neither starved nor ahead of everyone.
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local pass = head[2] or 0
for i = 1, #due do
  redis.call('ZREM', KEYS[1], due[i])
  redis.call('ZADD', KEYS[2], 'NX', pass, due[i])
end
return #due
