-- Deactivate or reactivate learners of ONE shard (a throttle: POST /api/v1/system/scale with
-- hold). Atomic per learner and per call: the learner's `inactive` mark (in its state hash), the
-- shard's inactive set and the coach's queue and ready set change together, so the coach never
-- sees a deactivated learner and never loses a reactivated one. Every key is the shard's (one
-- hash tag, one Cluster slot). A round committed concurrently is refused by commit_rounds.lua,
-- which checks the same mark in the same slot, so no commit can re-queue an inactive learner.
-- KEYS: 1 the shard's learners index, 2 its inactive set, 3 its coach queue, 4 its coach ready,
--       5.. the state hash of each learner of ARGV[2..], in the same order
-- ARGV: 1 'off' (deactivate) | 'on' (reactivate), 2.. learner ids (1..1000 of them)
-- Returns how many learners changed (a learner gone, already in the wanted state or not
-- indexed is skipped), or an `INVALID activation: …` error reply, having written nothing (every
-- argument is checked before the first write: Redis does not roll a failed script back).
--
-- The mark keeps the learner's coach placement to restore: `q` (queued: it rejoins the queue at
-- its current virtual time, as a newcomer does), `r:<review ms>` (ready: back in the ready set at
-- its review time) or `-` (in neither: never started, or between placements).
local function invalid(what)
  return redis.error_reply('INVALID activation: ' .. what)
end
local op = ARGV[1]
if op ~= 'off' and op ~= 'on' then return invalid('op must be off or on') end
local n = #ARGV - 1
if n < 1 or n > 1000 then return invalid('1..1000 learners') end
if #KEYS ~= n + 4 then return invalid('one state key per learner') end
for i = 2, #ARGV do
  if #ARGV[i] > 64 or not string.match(ARGV[i], '^[%w_.%-]+$') then
    return invalid('learner id')
  end
end

local changed = 0
for i = 1, n do
  local id, state = ARGV[i + 1], KEYS[i + 4]
  if op == 'off' then
    local seq = redis.call('ZSCORE', KEYS[1], id)
    if seq and redis.call('HEXISTS', state, 'v') == 1
        and redis.call('HEXISTS', state, 'inactive') == 0 then
      local place = '-'
      local review = redis.call('ZSCORE', KEYS[4], id)
      if review then
        place = 'r:' .. review
      elseif redis.call('ZSCORE', KEYS[3], id) then
        place = 'q'
      end
      redis.call('HSET', state, 'inactive', place)
      redis.call('ZREM', KEYS[3], id)
      redis.call('ZREM', KEYS[4], id)
      redis.call('ZADD', KEYS[2], seq, id)
      changed = changed + 1
    end
  else
    local place = redis.call('HGET', state, 'inactive')
    redis.call('ZREM', KEYS[2], id)
    if place then
      redis.call('HDEL', state, 'inactive')
      if place == 'q' then
        local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
        redis.call('ZADD', KEYS[3], 'NX', head[2] or 0, id)
      elseif string.sub(place, 1, 2) == 'r:' then
        redis.call('ZADD', KEYS[4], tonumber(string.sub(place, 3)) or 0, id)
      end
      changed = changed + 1
    end
  end
end
return changed
