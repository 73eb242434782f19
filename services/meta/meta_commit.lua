-- Commit one meta-learning step of ONE learner: the learner's meta document, its activity log,
-- optionally the learner state (meta's effect on the learner model), optionally the `completed`
-- event and the meta stats. Every key is in the learner's shard (one Cluster slot): the event goes
-- to the shard's meta stream and the counters to the shard's stats hash (the fleet's figures are
-- their sums, services/meta/store.py). Atomic: the meta version check, the learner-state version
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
-- KEYS: 1 learner state, 2 meta, 3 meta log, 4 the shard's meta stream, 5 the shard's meta stats,
--       6 run lock
-- ARGV: 1 expected meta version ('0' when the learner has no meta document yet), 2 new meta JSON,
--       3 log cap, 4 expected state version ('' = leave the learner state alone),
--       5 new encoded state, 6 phases run now (count, for stats), 7 number of log entries n,
--       8 run-lock token ('' = none held), 9..8+n log entries (JSON, oldest first: LPUSH leaves
--       the newest at the head), then optionally the completed event as field/value pairs (its
--       `delay_ms` also feeds the delay stats).
-- Returns {1, new meta version, new state version or 0} | {0, 'meta', current meta version}
--       | {0, 'state', current state version} | {-1} when the learner does not exist
--       | an `INVALID meta_commit: …` error reply, having written nothing.
-- Redis does not roll a script back when it fails half-way, so every input (and every stored
-- value the writes depend on) is checked before the first write: a bad argument, or a delay
-- that would overflow the stats, is refused with nothing written.
-- The completed event is appended without MAXLEN: a length cap would drop entries the coach or
-- reports have not read; shared/stream_trim.py trims the stream by their progress.
local function invalid(what)
  return redis.error_reply('INVALID meta_commit: ' .. what)
end
local function whole(x)  -- a non-negative integer written in digits, or nil
  if type(x) ~= 'string' or not string.match(x, '^%d+$') or #x > 15 then return nil end
  return tonumber(x)
end
local function json_ok(x)
  return pcall(cjson.decode, x)
end
local MAX_SAFE = 9007199254740991  -- 2^53 - 1: counters stay exact as Lua numbers and floats
if whole(ARGV[1]) == nil then return invalid('expected meta version') end
if not json_ok(ARGV[2]) then return invalid('meta document is not JSON') end
local cap = whole(ARGV[3])
if cap == nil or cap < 1 then return invalid('log cap') end
if ARGV[4] ~= '' then
  if whole(ARGV[4]) == nil then return invalid('expected state version') end
  if ARGV[5] == nil or ARGV[5] == '' then return invalid('new state missing') end
end
local ran = whole(ARGV[6])
if ran == nil then return invalid('phases run') end
local n = whole(ARGV[7])
if n == nil then return invalid('log entry count') end
if ARGV[8] == nil or #ARGV < 8 + n then return invalid('fewer log entries than counted') end
for i = 1, n do
  if not json_ok(ARGV[8 + i]) then return invalid('log entry ' .. i .. ' is not JSON') end
end
local first = 9 + n
if (#ARGV - first + 1) % 2 ~= 0 then return invalid('event fields are not pairs') end
local delay = nil
for i = first, #ARGV - 1, 2 do
  if ARGV[i] == 'delay_ms' then
    delay = whole(ARGV[i + 1])
    if delay == nil then return invalid('delay_ms') end
  end
end
if delay ~= nil then
  local sum = tonumber(redis.call('HGET', KEYS[5], 'delaySumMs') or '0')
  if sum == nil or sum + delay > MAX_SAFE then return invalid('delay sum would overflow') end
end
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
  sv = tonumber(cur)
  if sv == nil then return invalid('stored state version') end
  sv = sv + 1
end
local newmv = tonumber(mv)
if newmv == nil then return invalid('stored meta version') end
newmv = newmv + 1
-- Every check above is a read; the writes start here.
if sv > 0 then
  redis.call('HSET', KEYS[1], 'v', sv, 's', ARGV[5])
end
redis.call('HSET', KEYS[2], 'v', newmv, 's', ARGV[2])
for i = 1, n do
  redis.call('LPUSH', KEYS[3], ARGV[8 + i])
end
if n > 0 then
  redis.call('LTRIM', KEYS[3], 0, cap - 1)
end
if ran > 0 then
  redis.call('HINCRBY', KEYS[5], 'phasesRun', ran)
end
if #ARGV >= first then
  local event = {}
  for i = first, #ARGV - 1, 2 do
    event[#event + 1] = ARGV[i]
    event[#event + 1] = ARGV[i + 1]
  end
  redis.call('XADD', KEYS[4], '*', unpack(event))
  redis.call('HINCRBY', KEYS[5], 'completed', 1)
  if delay ~= nil then
    redis.call('HINCRBY', KEYS[5], 'delayCount', 1)
    redis.call('HINCRBY', KEYS[5], 'delaySumMs', delay)
    -- When it was recorded (Redis time, ms), so that the fleet's "last delay" is the newest
    -- shard's: each shard keeps its own.
    local now = redis.call('TIME')
    redis.call('HSET', KEYS[5], 'delayLastMs', delay,
      'delayLastAt', string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)))
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
