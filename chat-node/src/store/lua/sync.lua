-- One page of an inbox.
-- KEYS: 1 inbox zset, 2 pts counter
-- ARGV: 1 after, 2 limit, 3 message key prefix
-- Returns {newest pts, pts1, HGETALL msg1, pts2, HGETALL msg2, ...} with up
-- to limit + 1 entries (the extra one tells that more exist).
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES',
                        'LIMIT', 0, tonumber(ARGV[2]) + 1)
local out = {tonumber(redis.call('GET', KEYS[2]) or '0')}
for i = 1, #rows, 2 do
  out[#out + 1] = tonumber(rows[i + 1])
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. rows[i])
end
return out
