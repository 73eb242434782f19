-- Acquire one shard's lease for a new holder and hand it the shard's next fencing token,
-- atomically: the lease is taken (SET NX PX) and the shard's fence counter incremented in the
-- same step, so every acquisition has a token higher than any before it, and a writer holding
-- an older token is refused by the fenced writes for that shard once someone else acquired.
-- The lease and the fence share the shard's hash tag (one Cluster slot).
-- KEYS: 1 the shard's lease, 2 the shard's fence counter; ARGV: 1 holder token, 2 ttl ms.
-- Returns the new fencing token, 0 when another holder has the lease, or an
-- `INVALID shard_lease_acquire: …` error reply (nothing written) for a bad token or ttl.
if #ARGV ~= 2 or ARGV[1] == '' then
  return redis.error_reply('INVALID shard_lease_acquire: expected a non-empty token and a ttl')
end
local ttl = tonumber(ARGV[2])
if ttl == nil or not string.match(ARGV[2], '^%d+$') or ttl < 1 then
  return redis.error_reply('INVALID shard_lease_acquire: ttl must be a positive number of ms')
end
local fence = redis.call('GET', KEYS[2])
if fence and not string.match(fence, '^%d+$') then
  return redis.error_reply('INVALID shard_lease_acquire: the stored fence is not a counter')
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then
  return 0
end
return redis.call('INCR', KEYS[2])
