-- Record one evaluation of a rollout gate: its new state and the events it caused.
-- Atomic, and compare-and-set on the state's version: two web replicas evaluating at once both
-- compute from the same stored version, and only the first write lands (the other's events
-- would repeat it). The state and the history carry the `{gates}` tag: one slot.
-- KEYS: 1 the gates' state hash, 2 the history list (newest first)
-- ARGV: 1 gate id, 2 the stored version the state was computed from (0: none was stored),
--       3 the new state (JSON, its `v` one more), 4 the history cap, 5.. events (JSON)
-- Returns 1 written, 0 another writer was first (nothing written), or an
-- `INVALID gate_record: …` error reply, having written nothing (arguments checked first).
if #ARGV < 4 then
  return redis.error_reply('INVALID gate_record: needs gate, version, state, cap')
end
local gate, expected, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
if not string.match(gate, '^[A-Za-z0-9_.-]+$') or #gate > 64 then
  return redis.error_reply('INVALID gate_record: gate id')
end
if expected == nil or not string.match(ARGV[2], '^%d+$') then
  return redis.error_reply('INVALID gate_record: version')
end
if cap == nil or not string.match(ARGV[4], '^%d+$') or cap < 1 or cap > 1000000 then
  return redis.error_reply('INVALID gate_record: cap must be 1..1000000')
end
for i = 3, #ARGV do
  if i ~= 4 then
    local ok, decoded = pcall(cjson.decode, ARGV[i])
    if not ok or type(decoded) ~= 'table' then
      return redis.error_reply('INVALID gate_record: argument ' .. i .. ' is not a JSON object')
    end
  end
end
local current = redis.call('HGET', KEYS[1], gate)
local stored = 0
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and tonumber(decoded['v']) then
    stored = tonumber(decoded['v'])
  end
end
if stored ~= expected then
  return 0
end
redis.call('HSET', KEYS[1], gate, ARGV[3])
if #ARGV > 4 then
  for i = 5, #ARGV do
    redis.call('LPUSH', KEYS[2], ARGV[i])
  end
  redis.call('LTRIM', KEYS[2], 0, cap - 1)
end
return 1
