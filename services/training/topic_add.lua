-- Add (or, with force, replace) one curriculum topic, within the bound on the topic count.
-- Atomic: the count check, the write and the version bump happen together, so concurrent adds on
-- any replicas cannot overshoot the bound, and every replica's cache check (which reads the
-- version) sees the topic as soon as it exists.
-- KEYS: 1 curriculum hash, 2 curriculum version
-- ARGV: 1 topic key, 2 topic JSON, 3 force (1/0), 4 maximum number of topics
-- Returns {1, replaced 0/1} | {0, 'exists'} | {0, 'full', current count}.
local max = tonumber(ARGV[4])
if max == nil or string.sub(ARGV[2], 1, 1) ~= '{' then
  return redis.error_reply('topic_add: bad arguments')
end
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if exists and ARGV[3] ~= '1' then
  return {0, 'exists'}
end
if not exists then
  local count = redis.call('HLEN', KEYS[1])
  if count >= max then
    return {0, 'full', count}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return {1, exists and 1 or 0}
