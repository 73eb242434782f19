-- Commit one meta-learning step of ONE learner: the learner's meta document, its activity log,
-- optionally the learner state (meta's effect on the learner model), optionally the `completed`
-- event and the fleet-wide meta stats. Atomic: the meta version check, the learner-state version
-- check and every write happen in one script, so a phase is recorded completed exactly when its
-- effect is applied; two concurrent runners that read the same meta version cannot both commit
-- (the loser sees a conflict, re-reads and finds the phase completed); and a training round
-- committed in between makes the state check fail instead of being overwritten (the same check as
-- cas_state with op 'keep').
-- On success it also releases the caller's run lock (when ARGV[8] is its token), so a run's
-- commit and unlock are one round trip.
-- Owned by the meta service: services/meta/store.py registers it on its Redis client and builds
-- KEYS (`Keys.meta_commit_keys`) and ARGV (`_commit_args`, the completed event from
-- `shared.events.CompletedEvent`).
-- KEYS: 1 learner state, 2 meta, 3 meta log, 4 meta stream, 5 meta stats, 6 run lock
-- ARGV: 1 expected meta version ('0' when the learner has no meta document yet), 2 new meta JSON,
--       3 log cap, 4 expected state version ('' = leave the learner state alone),
--       5 new encoded state, 6 phases run now (count, for stats), 7 number of log entries n,
--       8 run-lock token ('' = none held), 9..8+n log entries (JSON, oldest first: LPUSH leaves
--       the newest at the head), then optionally the completed event as field/value pairs (its
--       `delay_ms` also feeds the delay stats).
-- Returns {1, new meta version, new state version or 0} | {0, 'meta', current meta version}
--       | {0, 'state', current state version} | {-1} when the learner does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local mv = redis.call('HGET', KEYS[2], 'v') or '0'
if mv ~= ARGV[1] then
  return {0, 'meta', mv}
end
local sv = 0
if ARGV[4] ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'v')
  if cur ~= ARGV[4] then
    return {0, 'state', cur}
  end
  sv = tonumber(cur) + 1
  redis.call('HSET', KEYS[1], 'v', sv, 's', ARGV[5])
end
local newmv = tonumber(mv) + 1
redis.call('HSET', KEYS[2], 'v', newmv, 's', ARGV[2])
local n = tonumber(ARGV[7])
for i = 1, n do
  redis.call('LPUSH', KEYS[3], ARGV[8 + i])
end
if n > 0 then
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
local ran = tonumber(ARGV[6])
if ran > 0 then
  redis.call('HINCRBY', KEYS[5], 'phasesRun', ran)
end
local first = 9 + n
if #ARGV >= first then
  local event = {}
  local delay = nil
  for i = first, #ARGV - 1, 2 do
    event[#event + 1] = ARGV[i]
    event[#event + 1] = ARGV[i + 1]
    if ARGV[i] == 'delay_ms' then
      delay = tonumber(ARGV[i + 1])
    end
  end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', unpack(event))
  redis.call('HINCRBY', KEYS[5], 'completed', 1)
  if delay ~= nil then
    redis.call('HINCRBY', KEYS[5], 'delayCount', 1)
    redis.call('HINCRBY', KEYS[5], 'delaySumMs', delay)
    redis.call('HSET', KEYS[5], 'delayLastMs', delay)
    local max = tonumber(redis.call('HGET', KEYS[5], 'delayMaxMs') or '-1')
    if delay > max then
      redis.call('HSET', KEYS[5], 'delayMaxMs', delay)
    end
  end
end
if ARGV[8] ~= '' and redis.call('GET', KEYS[6]) == ARGV[8] then
  redis.call('DEL', KEYS[6])
end
return {1, newmv, sv}
