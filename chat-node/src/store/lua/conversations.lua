-- A page of a user's conversation list, most recently active first.
-- KEYS: 1 the user's conversation list (zset conv -> last activity ms),
--       2 the user's unread hash, 3 the user's read-marks hash
-- ARGV: 1 user, 2 before (exclusive, ms), 3 limit, 4 key prefix
-- Returns {more (0/1), then per item: conv, updated, seq of its last
-- message for this user, HGETALL of that message (empty once it left Redis
-- for the archive), unread, read seq, peer ('' for a group), peer's read
-- seq, group name ('' for one-to-one)}.
--
-- A former member of a group sees it up to the message that removed them;
-- a group that is gone (its last member left) is left out.
local P, user = ARGV[4], ARGV[1]
local limit = tonumber(ARGV[3])
local listed = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '-inf',
  'WITHSCORES', 'LIMIT', 0, limit + 1)
local more = 0
if #listed > 2 * limit then more = 1 end
local out = {more}
for i = 1, math.min(#listed, 2 * limit), 2 do
  local conv, updated = listed[i], listed[i + 1]
  local list = P .. 'conv:' .. conv
  local n = redis.call('LLEN', list)
  local last = tonumber(redis.call('GET', list .. ':seq') or n)
  local seq, peer, peer_read, name, field = last, '', 0, '', conv
  local keep = true
  local gid = string.match(conv, '^g:(.+)$')
  if gid then
    name = redis.call('HGET', P .. 'group:' .. gid, 'name')
    if not name then
      keep = false
    elseif not redis.call('ZSCORE', P .. 'group:' .. gid .. ':members', user) then
      local left = redis.call('HGET', P .. 'group:' .. gid .. ':left', user)
      if left then seq = tonumber(left) else keep = false end
    end
  else
    local a, b = string.match(conv, '^dm:([^:]+):([^:]+)$')
    if a == user then peer = b else peer = a end
    peer_read = tonumber(redis.call('HGET', P .. 'read:' .. peer, conv) or '0')
    field = peer
  end
  if keep then
    local first = last - n + 1
    local fields = {}
    if seq >= first and seq >= 1 then
      local id = redis.call('LINDEX', list, seq - first)
      if id then fields = redis.call('HGETALL', P .. 'msg:' .. id) end
    end
    out[#out + 1] = conv
    out[#out + 1] = updated
    out[#out + 1] = seq
    out[#out + 1] = fields
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], field) or '0')
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[3], conv) or '0')
    out[#out + 1] = peer
    out[#out + 1] = peer_read
    out[#out + 1] = name
  end
end
return out
