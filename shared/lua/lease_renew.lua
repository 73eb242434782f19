-- Extend a lease only if we still hold it (compare token, then PEXPIRE, atomically).
-- KEYS: 1 lease; ARGV: 1 token, 2 ttl ms. Returns 1 if renewed, 0 if the lease is not ours, or
-- an `INVALID lease_renew: …` error reply (nothing written) for a bad token or ttl.
if #ARGV ~= 2 or ARGV[1] == '' then
  return redis.error_reply('INVALID lease_renew: expected a non-empty token and a ttl')
end
local ttl = tonumber(ARGV[2])
if ttl == nil or not string.match(ARGV[2], '^%d+$') or ttl < 1 then
  return redis.error_reply('INVALID lease_renew: ttl must be a positive number of ms')
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ttl)
end
return 0
