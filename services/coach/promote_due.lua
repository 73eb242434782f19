-- Move ready learners whose review is due back into the coach queue (spaced repetition).
-- Atomic: a learner leaves `coach:ready` and joins `coach:queue` in the same step, so it is never
-- in both sets or in neither (a concurrent commit that finds it ready again puts it back in
-- `ready`; one that finds it not ready leaves it queued — either way exactly one index holds it).
-- KEYS: 1 coach ready, 2 coach queue
-- ARGV: 1 now (epoch ms), 2 max learners to move
-- Returns the number of learners moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
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
