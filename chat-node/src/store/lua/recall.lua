-- The sender takes a message back: its content is gone from Redis (and,
-- through the archive feed, from SQL), and every participant's inbox gets
-- an event entry, in one step.
-- KEYS: 1 message hash, 2 archive feed stream
-- ARGV: 1 user, 2 message id, 3 now ms, 4 recall window ms (0: disabled),
--       5 key prefix, 6 retention entries, 7 retention cutoff ms,
--       8 '' or, for a message only the archive holds (already recalled
--       there by the node), its conv, 9 its group id or '', 10 its receiver
-- Returns {'recalled', HGETALL, {user, pts, ...}}, or {'archived'} when the
-- message has left Redis (the node checks and recalls it in the archive,
-- then calls again with ARGV 8 to 10 for the events: {'events', {user,
-- pts, ...}}), {'forbidden'}, {'already'} or {'too_late'}.
--
-- An event entry is '~<message id>:<ts>:<by>:<conv>' (the ts where a
-- message entry has it, so retention reads both alike; '~' is no id).
-- Like played.lua, the change bumps 'rev' and feeds an archived message
-- again, so the archive's row loses its content too.
local P = ARGV[5]
local function participants(from, to, group)
  local users = {}
  if group then
    users = redis.call('ZRANGE', P .. 'group:' .. group .. ':members', 0, -1)
    local has = false
    for i = 1, #users do if users[i] == from then has = true end end
    if not has then users[#users + 1] = from end
  else
    users = {from}
    if to ~= from then users[2] = to end
  end
  return users
end
local function events(users, conv)
  local entry = '~' .. ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[1] .. ':' .. conv
  local out = {}
  for i = 1, #users do
    out[#out + 1] = users[i]
    out[#out + 1] = inbox_append(P, users[i], entry, tonumber(ARGV[6]), tonumber(ARGV[7]))
  end
  return out
end

local f = redis.call('HMGET', KEYS[1], 'from', 'ts', 'recalled', 'kind', 'conv', 'to',
  'group', 'archived', 'seq')
if not f[1] then
  if ARGV[8] == '' then return {'archived'} end
  local group = ARGV[9]
  if group == '' then group = nil end
  return {'events', events(participants(ARGV[1], ARGV[10], group), ARGV[8])}
end
if f[1] ~= ARGV[1] or f[4] == 'system' then return {'forbidden'} end
if f[3] == '1' then return {'already'} end
local now, window = tonumber(ARGV[3]), tonumber(ARGV[4])
if window == 0 or now > tonumber(f[2]) + window then return {'too_late'} end

redis.call('HSET', KEYS[1], 'recalled', '1', 'body', '')
redis.call('HDEL', KEYS[1], 'media')
redis.call('HINCRBY', KEYS[1], 'rev', 1)
if f[8] == '1' then
  redis.call('HSET', KEYS[1], 'archived', '0')
  redis.call('XADD', KEYS[2], '*', 'i', ARGV[2], 'c', f[5], 's', f[9])
end

local out = events(participants(f[1], f[6], f[7]), f[5])
return {'recalled', redis.call('HGETALL', KEYS[1]), out}
