-- The newest messages of a conversation below a seq, oldest first.
-- KEYS: 1 conversation list (the message with seq s is at index s - 1)
-- ARGV: 1 exclusive upper bound seq, or '' for none, 2 limit, 3 message key prefix
-- Returns up to limit + 1 HGETALLs (the extra, oldest one tells that more exist).
local last = redis.call('LLEN', KEYS[1])
if ARGV[1] ~= '' then last = math.min(last, tonumber(ARGV[1]) - 1) end
if last < 1 then return {} end
local first = math.max(1, last - tonumber(ARGV[2]))
local ids = redis.call('LRANGE', KEYS[1], first - 1, last - 1)
local out = {}
for i = 1, #ids do
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. ids[i])
end
return out
