-- One page of an inbox.
-- KEYS: 1 inbox list, 2 pts counter
-- ARGV: 1 after, 2 limit, 3 message key prefix
-- Returns {newest pts, pts1, HGETALL msg1, pts2, HGETALL msg2, ...} with up
-- to limit + 1 entries (the extra one tells that more exist).
-- The inbox's first entry has pts = newest pts - length + 1 (see send.lua);
-- entries before it were dropped by retention.
local pts = tonumber(redis.call('GET', KEYS[2]) or '0')
local after = tonumber(ARGV[1])
if after >= pts then return {pts} end
local first = pts - redis.call('LLEN', KEYS[1]) + 1
local from = math.max(after + 1, first)
local ids = redis.call('LRANGE', KEYS[1], from - first, from - first + tonumber(ARGV[2]))
local out = {pts}
for i = 1, #ids do
  out[#out + 1] = from + i - 1
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. ids[i])
end
return out
