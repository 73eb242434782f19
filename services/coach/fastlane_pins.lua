-- Apply an operator's fast-lane pins in one shard, atomically: a learner is in at most one of
-- the pinned-in set, the pinned-out set and the automatic members (pinning either way takes it
-- out of the automatic members; a later round of the coach can admit it again only once its pin
-- is dropped). All three keys are the shard's (one hash tag, one Cluster slot).
-- KEYS: 1 the shard's pins (in), 2 its exclusions (pins out), 3 its automatic members
-- ARGV: 1 a = learners to pin in, 2 u = learners whose pin is dropped, 3 e = learners to pin out,
--       then the a, u and e learners.
-- Returns 1, or an `INVALID fastlane_pins: …` error reply having written nothing.
if #ARGV < 3 then return redis.error_reply('INVALID fastlane_pins: expected counts') end
for i = 1, 3 do
  if not string.match(ARGV[i], '^%d+$') then
    return redis.error_reply('INVALID fastlane_pins: counts must be integers')
  end
end
local a, u, e = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if #ARGV ~= 3 + a + u + e then
  return redis.error_reply('INVALID fastlane_pins: expected ' .. (3 + a + u + e) .. ' arguments')
end
for i = 4, 3 + a do
  redis.call('SADD', KEYS[1], ARGV[i])
  redis.call('SREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
for i = 4 + a, 3 + a + u do
  redis.call('SREM', KEYS[1], ARGV[i])
  redis.call('SREM', KEYS[2], ARGV[i])
end
for i = 4 + a + u, 3 + a + u + e do
  redis.call('SADD', KEYS[2], ARGV[i])
  redis.call('SREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
return 1
