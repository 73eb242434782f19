-- Extend a lease only if we still hold it (compare token, then PEXPIRE, atomically).
-- KEYS: 1 lease; ARGV: 1 token, 2 ttl ms. Returns 1 if renewed, 0 if the lease is not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
