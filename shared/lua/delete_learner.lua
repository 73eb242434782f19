-- Erase a learner and every index entry that names it, atomically.
-- KEYS: 1 state, 2 history, 3 meta, 4 meta log, 5 meta lock, 6 learners index, 7 regions,
--       8 coach queue, 9 coach ready, 10 coach fastlane, 11 coach coached
-- ARGV: 1 learner id
-- Returns 1 when erased, 0 when there was no such learner.
local raw = redis.call('HGET', KEYS[1], 's')
if raw == false then
  return 0
end
local region = cjson.decode(raw)['rg'] or 'local'
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[1])
if redis.call('HINCRBY', KEYS[7], region, -1) <= 0 then
  redis.call('HDEL', KEYS[7], region)
end
redis.call('ZREM', KEYS[8], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('SREM', KEYS[10], ARGV[1])
redis.call('ZREM', KEYS[11], ARGV[1])
return 1
