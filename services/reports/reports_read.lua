#!lua flags=no-writes
-- Read many hashes of ONE slot in one step: a shard's minute hashes and its totals (or the
-- `{system}` ones), for services/reports/queries.py (`read_minutes`), which runs one call per
-- shard, pipelined, and sums the shards' parts.
-- Why a script rather than a pipeline of HGETALLs: a day's window is 1,441 minutes per shard;
-- sent as commands that is ~24,500 replies at 16 shards, each paying the client's per-command
-- cost (measured: ~0.5 s per query, almost all of it in the client), against one reply per shard
-- here. And the reads of one shard are one atomic step, so its totals and its minutes agree
-- exactly. `no-writes`: it runs when Redis is at maxmemory too (the dashboard must still show
-- the out-of-memory alert) and may run on a replica.
-- KEYS: the hashes to read. ARGV: none.
-- Returns one array per key, in order: its HGETALL (field, value, …; empty when it does not
-- exist).
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGETALL', key)
end
return out
