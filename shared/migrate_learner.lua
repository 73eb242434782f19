-- Move ONE learner from the unsharded layout into its shard (shared/migrate_layout.py).
-- Atomic: the learner's keys are renamed, it gets a creation number in its shard's index, its
-- region is counted in the shard, its coach memberships (queue, ready set, fast lane, coached)
-- move with their scores, and it leaves the old index, all in one step. So the old index is
-- itself the migration's progress: a migration killed at any point and run again moves exactly
-- the learners still listed there, and none twice.
-- Old and new keys lie in different slots: the layout migration runs on a single Redis only (a
-- fleet never ran on a Redis Cluster before it had shards).
-- KEYS: 1..5 old state, history, meta, meta log, meta lock; 6..10 the same, new names;
--       11 old learners index; 12 the shard's learners index; 13 the shard's learners seq;
--       14 the shard's regions hash; 15..18 old coach queue, ready, fast lane, coached;
--       19..22 the shard's coach queue, ready, fast lane, coached
-- ARGV: 1 learner id
-- Returns 1 when the learner moved, 0 when it had no state under the old names (its old index
-- and coach entries are dropped: nothing to move), or an `INVALID migrate_learner: …` error
-- reply having written nothing (checked before the first write: Redis does not roll back).
local function invalid(what)
  return redis.error_reply('INVALID migrate_learner: ' .. what)
end
if #KEYS ~= 22 then return invalid('expected 22 keys, got ' .. #KEYS) end
if #ARGV ~= 1 then return invalid('expected 1 argument, got ' .. #ARGV) end
local id = ARGV[1]
if #id > 64 or not string.match(id, '^[%w_.%-]+$') then return invalid('learner id') end

local moved = 0
local raw = redis.call('HGET', KEYS[1], 's')
if raw then
  if redis.call('EXISTS', KEYS[6]) == 1 then
    return invalid(id .. ' exists under both layouts')
  end
  local ok, doc = pcall(cjson.decode, raw)
  if not ok or type(doc) ~= 'table' then return invalid(id .. ': stored state is not JSON') end
  local region = doc['rg'] or 'local'
  if type(region) ~= 'string' or region == '' then return invalid(id .. ': stored region') end
  -- Every check above is a read; the writes start here.
  for i = 1, 5 do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('RENAME', KEYS[i], KEYS[i + 5])
    end
  end
  local seq = redis.call('INCR', KEYS[13])
  redis.call('ZADD', KEYS[12], 'NX', seq, id)
  redis.call('HINCRBY', KEYS[14], region, 1)
  moved = 1
end
for i = 15, 18 do
  local old, new = KEYS[i], KEYS[i + 4]
  if i == 17 then
    if redis.call('SREM', old, id) == 1 and moved == 1 then
      redis.call('SADD', new, id)
    end
  else
    local score = redis.call('ZSCORE', old, id)
    if score then
      redis.call('ZREM', old, id)
      if moved == 1 then
        redis.call('ZADD', new, 'NX', score, id)
      end
    end
  end
end
redis.call('ZREM', KEYS[11], id)
return moved
