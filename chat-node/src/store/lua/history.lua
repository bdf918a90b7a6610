-- The newest messages of a conversation below a seq, newest first.
-- KEYS: 1 conversation zset
-- ARGV: 1 upper bound ('+inf' or '(N'), 2 limit, 3 message key prefix
-- Returns up to limit + 1 HGETALLs (the extra one tells that more exist).
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, tonumber(ARGV[2]) + 1)
local out = {}
for i = 1, #ids do
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. ids[i])
end
return out
