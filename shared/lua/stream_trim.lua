-- Trim one stream without ever deleting an entry a consumer group still needs.
-- Atomic: the groups' progress is read and the stream trimmed in the same step, so a group
-- created (XGROUP CREATE … 0) or moved back (SETID) by another client cannot slip in between
-- the read and the trim. One key only: a Cluster runs it on that stream's node.
-- Per group the floor is the lower of its oldest pending id (delivered, not yet acknowledged:
-- XPENDING's summary) and the id just after its last-delivered id (the first entry it has not
-- been given yet); the stream is trimmed below the lowest floor over its groups (XTRIM MINID).
-- Acknowledged entries younger than a retention (ARGV[3] ms, by Redis' own clock, the clock of
-- the ids) are kept too: the streams double as the fleet's recent event log (an operator's or a
-- test's XRANGE of `events:system`), so the floor is never above now - retention.
-- A stream without any group keeps a length cap instead (XTRIM MAXLEN).
-- Trimming is approximate (`~`, whole macro nodes) and bounded (LIMIT), so one call never holds
-- Redis for long; approximate only ever keeps more than asked, never less.
-- Used by shared/stream_trim.py. KEYS: 1 stream; ARGV: 1 length cap for a stream without
-- groups, 2 LIMIT (most entries evicted by this call), 3 retention of acknowledged entries (ms).
-- Returns {entries trimmed, groups, floor id ('' when capped by length or nothing to do)}, or
-- an `INVALID stream_trim: …` error reply (nothing trimmed) for a bad cap or limit.
local cap = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
if #ARGV ~= 3 or cap == nil or cap < 0 or cap % 1 ~= 0 or limit == nil or limit < 1
    or limit % 1 ~= 0 or retention == nil or retention < 0 or retention % 1 ~= 0 then
  return redis.error_reply('INVALID stream_trim: cap, limit and retention must be whole numbers')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0, ''}
end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq), ms
end
-- true when stream id a is lower than b
local function lower(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then
  return {redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', cap, 'LIMIT', limit), 0, ''}
end
-- The oldest id the retention keeps: (server time in ms - retention)-0.
local now = redis.call('TIME')
local floor = string.format('%d', math.max(0, tonumber(now[1]) * 1000
  + math.floor(tonumber(now[2]) / 1000) - retention)) .. '-0'
for _, flat in ipairs(groups) do
  local info = {}
  for i = 1, #flat - 1, 2 do
    info[flat[i]] = flat[i + 1]
  end
  -- The id right after the last delivered one (ms kept as text: Lua prints big numbers as 1e+15).
  local _, seq, ms = parse(info['last-delivered-id'])
  local candidate = ms .. '-' .. string.format('%d', seq + 1)
  local pending = redis.call('XPENDING', KEYS[1], info['name'])
  if tonumber(pending[1]) > 0 and lower(pending[2], candidate) then
    candidate = pending[2]
  end
  if lower(candidate, floor) then
    floor = candidate
  end
end
return {redis.call('XTRIM', KEYS[1], 'MINID', '~', floor, 'LIMIT', limit), #groups, floor}
