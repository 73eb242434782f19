-- Commit one or more training rounds of ONE learner. This is the fleet's central atomic step:
-- the version check, the new state, the fleet-wide round ids, the learner's history, the rounds
-- stream events, the readiness flag and the coach's queue/ready indexes all change in one script,
-- so a round is either fully recorded or not at all, and ids are unique and increasing across
-- every training replica (INCRBY on one counter inside the script).
-- KEYS: 1 state, 2 history, 3 round seq, 4 rounds stream, 5 coach settings, 6 coach queue,
--       7 coach ready, 8 meta stream
-- ARGV: 1 expected version, 2 new encoded state, 3 learner id, 4 region, 5 average mastery,
--       6 domains below target, 7 next review (epoch ms), 8 and 9 the readiness thresholds used
--       when the coach settings lack `minAvgMastery` / `maxBelow80` (shared/readiness.py),
--       10 history cap, 11 rounds stream max length (approximate), 12 n rounds,
--       then per round i (1..n): 11+2i history entry JSON (an object; its id is prepended here),
--                                12+2i round duration in ms,
--       then optionally 13+2n: an incarnation guard, a substring the current encoded state must
--       contain (training passes the learner's `"sd":<seed>,`). A caller that computed from a
--       cached state passes it, so a learner deleted and re-created (its version restarts at 1)
--       cannot be overwritten by a stale copy whose version happens to match.
-- Returns {1, new version, first round id, ready 0/1, became ready 0/1}
--       | {0, current version, current state} on a version conflict | {-1} if the learner is gone.
local cur = redis.call('HGET', KEYS[1], 'v')
if cur == false then
  return {-1}
end
if cur ~= ARGV[1] then
  return {0, cur, redis.call('HGET', KEYS[1], 's')}
end
local n = tonumber(ARGV[12])
local guard = ARGV[13 + 2 * n]
if guard then
  local s = redis.call('HGET', KEYS[1], 's')
  if not string.find(s, guard, 1, true) then
    return {0, cur, s}
  end
end
-- The events' ts is the server's time at commit, not the caller's: the caller's clock was read
-- before it computed the rounds (a whole batch, for the coach), and the meta trigger delay is
-- measured from the commit. TIME before writes is allowed: since Redis 5 scripts are
-- replicated by their effects (the default), so a non-deterministic read cannot diverge replicas.
local t = redis.call('TIME')
local now_ms = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local last = redis.call('INCRBY', KEYS[3], n)
local first = last - n + 1
local newv = tonumber(cur) + 1
local avg = tonumber(ARGV[5])
local below = tonumber(ARGV[6])
local min_avg = tonumber(redis.call('HGET', KEYS[5], 'minAvgMastery') or ARGV[8]) or tonumber(ARGV[8])
local max_below = tonumber(redis.call('HGET', KEYS[5], 'maxBelow80') or ARGV[9]) or tonumber(ARGV[9])
local ready = avg >= min_avg and below <= max_below
local was_ready = redis.call('HGET', KEYS[1], 'r') == '1'
redis.call('HSET', KEYS[1], 'v', newv, 's', ARGV[2], 'r', ready and '1' or '0')
for i = 1, n do
  local rid = first + i - 1
  local entry = ARGV[11 + 2 * i]
  redis.call('LPUSH', KEYS[2], '{"round":' .. rid .. ',' .. string.sub(entry, 2))
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[11], '*',
    'round', rid, 'learner', ARGV[3], 'region', ARGV[4], 'ts', now_ms,
    'ms', ARGV[12 + 2 * i], 'avg', ARGV[5])
end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[10]) - 1)
local became = 0
if ready then
  redis.call('ZREM', KEYS[6], ARGV[3])
  redis.call('ZADD', KEYS[7], ARGV[7], ARGV[3])
  if not was_ready then
    became = 1
    redis.call('XADD', KEYS[8], 'MAXLEN', '~', 100000, '*',
      'type', 'ready', 'learner', ARGV[3], 'round', last, 'ts', now_ms,
      'avg', ARGV[5], 'below', ARGV[6])
  end
else
  redis.call('ZREM', KEYS[7], ARGV[3])
  if redis.call('ZSCORE', KEYS[6], ARGV[3]) == false then
    local head = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
    redis.call('ZADD', KEYS[6], head[2] or 0, ARGV[3])
  end
end
return {1, newv, first, ready and 1 or 0, became}
