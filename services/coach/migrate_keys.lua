-- Move the coach's keys from their names before the `{coach}` hash tag to their current names
-- (shared/keys.py `legacy_coach_keys`), so a fleet upgraded in place keeps its coach settings,
-- queue, ready set, fast lane and counters. Idempotent: a key already moved is gone under its
-- old name, so a second run (another replica, the next start) moves nothing.
-- Atomic: one script, so two coach replicas starting together cannot interleave a move.
-- The old and new names lie in different slots; that is fine because old names only exist on
-- the single-node Redis fleets that predate the tag (a Cluster deployment starts with the
-- tagged names and finds nothing to move; the coach only runs this when an old name exists).
-- When a key exists under both names (a training commit wrote the new queue before the coach
-- started), the two are merged and the current name's values win: HSETNX for hash fields,
-- ZADD NX for sorted-set members, SADD for set members; a list under both names keeps the new.
-- KEYS: old1, new1, old2, new2, …; ARGV: none. Returns the number of keys moved or merged.
if #KEYS % 2 ~= 0 or #ARGV ~= 0 then
  return redis.error_reply('INVALID migrate_keys: KEYS must be old/new pairs, no ARGV')
end
local moved = 0
for i = 1, #KEYS - 1, 2 do
  local old, new = KEYS[i], KEYS[i + 1]
  if redis.call('EXISTS', old) == 1 then
    if redis.call('EXISTS', new) == 0 then
      redis.call('RENAME', old, new)
    else
      local kind = redis.call('TYPE', old)['ok']
      if kind == 'hash' then
        local flat = redis.call('HGETALL', old)
        for j = 1, #flat, 2 do
          redis.call('HSETNX', new, flat[j], flat[j + 1])
        end
      elseif kind == 'zset' then
        local flat = redis.call('ZRANGE', old, 0, -1, 'WITHSCORES')
        for j = 1, #flat, 2 do
          redis.call('ZADD', new, 'NX', flat[j + 1], flat[j])
        end
      elseif kind == 'set' then
        local members = redis.call('SMEMBERS', old)
        for j = 1, #members do
          redis.call('SADD', new, members[j])
        end
      end
      redis.call('DEL', old)
    end
    moved = moved + 1
  end
end
return moved
