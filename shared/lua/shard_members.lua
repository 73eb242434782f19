-- One heartbeat of a replica in the members set of a role (coach, reports): the member's entry
-- is given the expiry now + ttl, the entries of members that stopped beating are dropped, and
-- the number of live members is returned, all against Redis's clock (replicas on different
-- hosts need not agree on the time). With ARGV[3] = '1' the member leaves instead (a graceful
-- stop), so the others' fair shares grow at once rather than after the ttl.
-- KEYS: 1 members sorted set (member token -> expiry ms); ARGV: 1 token, 2 ttl ms, 3 '1' to leave.
-- Returns the number of live members after the change, or an `INVALID shard_members: …` error
-- reply (nothing written).
if #ARGV ~= 3 or ARGV[1] == '' or (ARGV[3] ~= '0' and ARGV[3] ~= '1') then
  return redis.error_reply('INVALID shard_members: expected a token, a ttl and 0/1')
end
local ttl = tonumber(ARGV[2])
if ttl == nil or not string.match(ARGV[2], '^%d+$') or ttl < 1 then
  return redis.error_reply('INVALID shard_members: ttl must be a positive number of ms')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
