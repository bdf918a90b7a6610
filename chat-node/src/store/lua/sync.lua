-- One page of an inbox.
-- KEYS: 1 inbox list, 2 pts counter
-- ARGV: 1 after, 2 limit, 3 message key prefix
-- Returns {newest pts, oldest kept pts, pts1, entry1, HGETALL msg1, pts2, ...}
-- with up to limit + 1 entries (the extra one tells that more exist). An
-- entry is '<id>:<ts>:<seq>:<conv>' or a bare id (see send.lua); its HGETALL
-- is empty once the message has left Redis for the archive, and for an
-- event entry ('~<id>:<ts>:<by>:<conv>', see recall.lua).
-- The inbox's first entry has pts = newest pts - length + 1 (see send.lua);
-- entries before it were dropped by retention.
local pts = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = pts - redis.call('LLEN', KEYS[1]) + 1
local after = tonumber(ARGV[1])
if after >= pts then return {pts, first} end
local from = math.max(after + 1, first)
local entries = redis.call('LRANGE', KEYS[1], from - first, from - first + tonumber(ARGV[2]))
local out = {pts, first}
for i = 1, #entries do
  local id = string.match(entries[i], '^([^:]+)')
  out[#out + 1] = from + i - 1
  out[#out + 1] = entries[i]
  -- An event entry ('~...', recall.lua) carries all it says.
  if string.sub(id, 1, 1) == '~' then
    out[#out + 1] = {}
  else
    out[#out + 1] = redis.call('HGETALL', ARGV[3] .. id)
  end
end
return out
