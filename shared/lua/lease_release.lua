-- Release a lease only if we hold it. KEYS: 1 lease; ARGV: 1 token. Returns 1 if released, 0
-- if not ours, or an `INVALID lease_release: …` error reply (nothing written) for a bad token.
if #ARGV ~= 1 or ARGV[1] == '' then
  return redis.error_reply('INVALID lease_release: expected one non-empty token')
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
