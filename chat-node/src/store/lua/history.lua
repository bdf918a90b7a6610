-- The newest messages of a conversation below a seq that Redis holds.
-- KEYS: 1 conversation list, 2 its seq counter
-- ARGV: 1 exclusive upper bound seq, or '' for none, 2 limit, 3 message key prefix
-- Returns {last seq, first seq held, lowest seq of the page, HGETALLs...}:
-- the page is seqs lowest..top (top = min(last, bound - 1)), and the
-- HGETALLs are those of it that Redis holds (seq >= first), ascending; the
-- rest, below first, left Redis for the archive. Without an archive
-- nothing leaves, and a conversation stored before the counter existed has
-- length = last seq.
local n = redis.call('LLEN', KEYS[1])
local last = tonumber(redis.call('GET', KEYS[2]) or n)
local first = last - n + 1
local top = last
if ARGV[1] ~= '' then top = math.min(top, tonumber(ARGV[1]) - 1) end
if top < 1 then return {last, first, 1} end
local lowest = math.max(1, top - tonumber(ARGV[2]) + 1)
local out = {last, first, lowest}
local from = math.max(lowest, first)
if from > top then return out end
local ids = redis.call('LRANGE', KEYS[1], from - first, top - first)
for i = 1, #ids do
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. ids[i])
end
return out
