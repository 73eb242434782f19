-- Fold ONE learner's history list (the encoding before the compact history string) into the
-- string, with the learner's state carrying the new anchor: the string, the state and the list's
-- removal change together, and only if neither the state nor the string changed since the caller
-- read them (a round committed meanwhile makes the caller read and fold again). Every key is the
-- learner's (one hash tag, one Cluster slot). Run by shared/migrate_history.py.
-- KEYS: 1 state, 2 history string, 3 history list
-- ARGV: 1 expected state version, 2 expected history string ('' = none), 3 new history string,
--       4 new encoded state (JSON)
-- Returns 1 folded | 0 changed meanwhile (nothing written) | -1 no such learner (the list is
-- deleted: it belongs to nobody) | an `INVALID compact_history: …` error, having written nothing.
local function invalid(what)
  return redis.error_reply('INVALID compact_history: ' .. what)
end
if #ARGV ~= 4 then return invalid('expected 4 arguments, got ' .. #ARGV) end
if string.sub(ARGV[3], 1, 1) ~= 'h' then return invalid('new history string') end
if not pcall(cjson.decode, ARGV[4]) then return invalid('state is not JSON') end
local v = redis.call('HGET', KEYS[1], 'v')
if v == false then
  redis.call('DEL', KEYS[3])
  return -1
end
local cur = redis.call('GET', KEYS[2]) or ''
if v ~= ARGV[1] or cur ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 's', ARGV[4])
redis.call('DEL', KEYS[3])
return 1
