-- Delete one curriculum topic. Atomic: the delete and the version bump happen together (every
-- replica's cache check, which reads the version, sees the topic gone), and an unknown topic
-- changes nothing, not even the version.
-- KEYS: 1 curriculum hash, 2 curriculum version
-- ARGV: 1 topic key
-- Returns 1 when deleted, 0 when there was no such topic.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('INCR', KEYS[2])
return 1
