-- Erase a learner and every index entry that names it, atomically. Every key is in the learner's
-- shard (one hash tag): the indexes are the shard's own.
-- KEYS: 1 state, 2 history, 3 meta, 4 meta log, 5 meta lock, 6 learners index, 7 regions,
--       8 coach queue, 9 coach ready, 10 coach fastlane, 11 coach coached,
--       12 fast lane pinned out, 13 fast lane automatic members, 14 inactive learners
--       (all of the shard)
-- ARGV: 1 learner id
-- Returns 1 when erased, 0 when there was no such learner, or an `INVALID delete_learner: …`
-- error reply, having written nothing (checked before the first write: Redis does not roll a
-- failed script back).
local function invalid(what)
  return redis.error_reply('INVALID delete_learner: ' .. what)
end
if #ARGV ~= 1 then return invalid('expected 1 argument, got ' .. #ARGV) end
if #ARGV[1] > 64 or not string.match(ARGV[1], '^[%w_.%-]+$') then return invalid('learner id') end
local raw = redis.call('HGET', KEYS[1], 's')
if raw == false then
  return 0
end
local ok, doc = pcall(cjson.decode, raw)
if not ok or type(doc) ~= 'table' then return invalid('stored state is not JSON') end
local region = doc['rg'] or 'local'
if type(region) ~= 'string' then return invalid('stored region') end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[1])
if redis.call('HINCRBY', KEYS[7], region, -1) <= 0 then
  redis.call('HDEL', KEYS[7], region)
end
redis.call('ZREM', KEYS[8], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('SREM', KEYS[10], ARGV[1])
redis.call('ZREM', KEYS[11], ARGV[1])
redis.call('SREM', KEYS[12], ARGV[1])
redis.call('ZREM', KEYS[13], ARGV[1])
redis.call('ZREM', KEYS[14], ARGV[1])
return 1
