-- Erase a learner and every index entry that names it, atomically. Every key is in the learner's
-- shard (one hash tag): the indexes are the shard's own.
-- KEYS: 1 state, 2 history, 3 history list (the encoding before the compact one), 4 meta,
--       5 meta log, 6 meta lock, 7 learners index, 8 regions, 9 coach queue, 10 coach ready,
--       11 coach fastlane, 12 coach coached, 13 fast lane pinned out,
--       14 fast lane automatic members, 15 inactive learners (all of the shard)
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
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[7], ARGV[1])
if redis.call('HINCRBY', KEYS[8], region, -1) <= 0 then
  redis.call('HDEL', KEYS[8], region)
end
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('ZREM', KEYS[10], ARGV[1])
redis.call('SREM', KEYS[11], ARGV[1])
redis.call('ZREM', KEYS[12], ARGV[1])
redis.call('SREM', KEYS[13], ARGV[1])
redis.call('ZREM', KEYS[14], ARGV[1])
redis.call('ZREM', KEYS[15], ARGV[1])
return 1
