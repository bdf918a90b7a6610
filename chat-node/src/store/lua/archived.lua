-- After an archiver committed a batch to SQL: mark its messages archived,
-- acknowledge and delete their feed entries, then let archived messages
-- beyond each conversation's hot window leave Redis.
-- KEYS: 1 archive feed stream, 2 trim schedule (zset: conv -> when)
-- ARGV: 1 consumer group, 2 message key prefix, 3 conversation key prefix,
--       4 hot messages, 5 now ms, 6 hot ms, 7 number of entries n,
--       then n triples (entry id, message id, rev the archiver wrote),
--       then the conversations to trim.
-- Returns {messages marked archived, messages fed again, messages trimmed}.
--
-- A message whose rev changed since the archiver read it (played meanwhile)
-- is fed again instead of marked: the row in SQL may miss the change.
-- A message leaves Redis only when it is archived, not among the newest hot
-- messages of its conversation, and older than hot ms. One that is too young
-- is scheduled for when it is old enough; a conversation whose first message
-- is not archived yet is trimmed again by the archiver that archives it.
local stream, schedule, group = KEYS[1], KEYS[2], ARGV[1]
local msg_prefix, conv_prefix = ARGV[2], ARGV[3]
local hot, now, hot_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local marked, refed, trimmed = 0, 0, 0
for i = 0, n - 1 do
  local entry, id, rev = ARGV[8 + 3 * i], ARGV[9 + 3 * i], ARGV[10 + 3 * i]
  local key = msg_prefix .. id
  local f = redis.call('HMGET', key, 'rev', 'conv', 'seq')
  if f[2] then
    if (f[1] or '0') == rev then
      redis.call('HSET', key, 'archived', '1')
      marked = marked + 1
    else
      redis.call('XADD', stream, '*', 'i', id, 'c', f[2], 's', f[3])
      refed = refed + 1
    end
  end
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end

local cutoff = now - hot_ms
-- Messages one call may drop, over all its conversations: Redis does
-- nothing else while a script runs. Twice the batch, so trimming keeps up
-- with archiving; what is left waits for the next sweep.
local budget = math.max(256, 2 * n)
local function trim(conv)
  local list = conv_prefix .. conv
  local len = redis.call('LLEN', list)
  while len > hot do
    if trimmed >= budget then
      redis.call('ZADD', schedule, now, conv)
      return
    end
    local id = redis.call('LINDEX', list, 0)
    local f = redis.call('HMGET', msg_prefix .. id, 'archived', 'ts')
    if f[2] and f[1] ~= '1' then
      redis.call('ZREM', schedule, conv)
      return
    end
    if f[2] and tonumber(f[2]) >= cutoff then
      redis.call('ZADD', schedule, tonumber(f[2]) + hot_ms, conv)
      return
    end
    redis.call('LPOP', list)
    redis.call('DEL', msg_prefix .. id)
    len = len - 1
    trimmed = trimmed + 1
  end
  redis.call('ZREM', schedule, conv)
end

for i = 8 + 3 * n, #ARGV do
  trim(ARGV[i])
end
return {marked, refed, trimmed}
