-- Creates a group, changes its members, or stores a message to it: one
-- atomic step each (DESIGN.md, "Groups, conversation list, recall").
-- KEYS: 1 group hash, 2 members zset, 3 left hash, 4 conversation list,
--       5 conversation seq counter, 6 archive stream, 7 client-id hash
--       of this bucket (send only), 8 push feed stream, 9 client-id hash
--       of the bucket before (send only; see send.lua)
-- ARGV: 1 op (send|create|add|remove|leave), 2 group id, 3 actor, 4 ts ms,
--       5 key prefix, 6 when this bucket's client-id hash expires (ms
--       since the epoch), 7 retention entries,
--       8 retention cutoff ms, 9 '1' with an archive, 10 most archive lag,
--       11 most members, 12 first message id, 13 second message id,
--       14 '1' to return the recipients' presence, 15 most push feed
--       entries ('0': no push webhook),
--       then for send: 16 kind, 17 body, 18 media JSON or '', 19 '1' for
--       voice, 20 client id;
--       for create: 16 name, then the members;
--       for add and remove: from 16 the users.
-- Returns {'not_found'}, {'forbidden', why}, {'too_many'}, {'invalid', why},
-- {'lag', n}, {'dup', HGETALL of the first message} (a retried client id),
-- or {'ok', {name, owner, created} or {} once the group is gone, members,
--        {user, HGETALL of their presence, ...} for every recipient when
--        asked (read in this same step, like send.lua's), else {},
--        pushes dropped (the push feed was full),
--        then per stored message {HGETALL, {user, pts, user, pts, ...}}}.
--
-- A send (not a system message) gives every member but the sender with no
-- live session anywhere a push feed entry, as send.lua does.
--
-- Every member's inbox gets a message once, with that member's own pts
-- (write diffusion, bounded by the member limit); unread counts (field
-- 'g:<id>') rise for every member but the sender, and not for system
-- messages; every recipient's conversation list is touched. A member who
-- is removed or leaves loses the group's unread count (they can no longer
-- `read` it).
local P = ARGV[5]
local op, gid, actor, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local conv = 'g:' .. gid
local max_entries, cutoff = tonumber(ARGV[7]), tonumber(ARGV[8])
local archive = ARGV[9] == '1'
local max_members = tonumber(ARGV[11])

local function members() return redis.call('ZRANGE', KEYS[2], 0, -1) end
local function is_member(u) return redis.call('ZSCORE', KEYS[2], u) ~= false end
local function join(u)
  redis.call('ZADD', KEYS[2], redis.call('HINCRBY', KEYS[1], 'joins', 1), u)
  redis.call('HDEL', KEYS[3], u)
end
local function info()
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  return redis.call('HMGET', KEYS[1], 'name', 'owner', 'created')
end
-- A system event as JSON (user ids need no escaping).
local function system(event, users)
  local quoted = {}
  for i = 1, #users do quoted[i] = '"' .. users[i] .. '"' end
  return '{"event":"' .. event .. '","by":"' .. actor .. '","users":[' ..
    table.concat(quoted, ',') .. ']}'
end

-- Stores one message of the group conversation for recipients.
local function store(id, fields, recipients, counts)
  local seq = redis.call('INCR', KEYS[5])
  redis.call('RPUSH', KEYS[4], id)
  local all = {'id', id, 'conv', conv, 'seq', seq, 'from', actor, 'group', gid, 'ts', ts}
  for i = 1, #fields do all[#all + 1] = fields[i] end
  local key = P .. 'msg:' .. id
  redis.call('HSET', key, unpack(all))
  if archive then
    redis.call('XADD', KEYS[6], '*', 'i', id, 'c', conv, 's', seq)
  end
  local entry = id .. ':' .. ts .. ':' .. seq .. ':' .. conv
  local out = {}
  for i = 1, #recipients do
    local u = recipients[i]
    out[#out + 1] = u
    out[#out + 1] = inbox_append(P, u, entry, max_entries, cutoff)
    if counts and u ~= actor then
      redis.call('HINCRBY', P .. 'unread:' .. u, conv, 1)
    end
    redis.call('ZADD', P .. 'convs:' .. u, 'GT', ts, conv)
  end
  return {redis.call('HGETALL', key), out}, seq
end
local function sys_fields(event, users)
  return {'kind', 'system', 'body', '', 'system', system(event, users)}
end

if op == 'send' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
  if not is_member(actor) then return {'forbidden', 'only members may write to a group'} end
  local first = redis.call('HGET', KEYS[7], ARGV[20]) or redis.call('HGET', KEYS[9], ARGV[20])
  if first then
    local id = string.match(first, '^([^:]+)')
    return {'dup', redis.call('HGETALL', P .. 'msg:' .. id)}
  end
end
if op ~= 'create' and redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
if archive then
  local lag = redis.call('XLEN', KEYS[6])
  if lag >= tonumber(ARGV[10]) then return {'lag', lag} end
end

local owner = redis.call('HGET', KEYS[1], 'owner')
local stored = {}
local push_dropped = 0
if op == 'send' then
  local fields = {'kind', ARGV[16], 'body', ARGV[17]}
  if ARGV[18] ~= '' then fields[#fields + 1] = 'media'; fields[#fields + 1] = ARGV[18] end
  if ARGV[19] == '1' then fields[#fields + 1] = 'played'; fields[#fields + 1] = '0' end
  local r = store(ARGV[12], fields, members(), true)
  stored[1] = r
  local spts = 0
  for i = 1, #r[2], 2 do
    if r[2][i] == actor then spts = r[2][i + 1] end
  end
  redis.call('HSET', KEYS[7], ARGV[20], ARGV[12] .. ':' .. spts .. ':0')
  redis.call('PEXPIREAT', KEYS[7], ARGV[6])
  local max_push = tonumber(ARGV[15])
  if max_push > 0 then
    local room = max_push - redis.call('XLEN', KEYS[8])
    for i = 1, #r[2], 2 do
      local u = r[2][i]
      if u ~= actor and redis.call('EXISTS', P .. 'presence:' .. u) == 0 then
        if room > 0 then
          redis.call('XADD', KEYS[8], '*', 'u', u, 'i', ARGV[12])
          room = room - 1
        else
          push_dropped = push_dropped + 1
        end
      end
    end
  end
elseif op == 'create' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'invalid', 'group id taken'} end
  local all, others = {actor}, {}
  for i = 17, #ARGV do
    if ARGV[i] ~= actor then all[#all + 1] = ARGV[i]; others[#others + 1] = ARGV[i] end
  end
  if #all > max_members then return {'too_many'} end
  redis.call('HSET', KEYS[1], 'name', ARGV[16], 'owner', actor, 'created', ts, 'joins', 0)
  for i = 1, #all do join(all[i]) end
  stored[1] = store(ARGV[12], sys_fields('created', others), all, false)
elseif op == 'add' then
  if owner ~= actor then return {'forbidden', "only the group's owner may add members"} end
  local new = {}
  for i = 16, #ARGV do
    if not is_member(ARGV[i]) then new[#new + 1] = ARGV[i] end
  end
  if redis.call('ZCARD', KEYS[2]) + #new > max_members then return {'too_many'} end
  if #new > 0 then
    for i = 1, #new do join(new[i]) end
    stored[1] = store(ARGV[12], sys_fields('added', new), members(), false)
  end
elseif op == 'remove' then
  if owner ~= actor then return {'forbidden', "only the group's owner may remove members"} end
  local gone = {}
  for i = 16, #ARGV do
    if ARGV[i] == owner then return {'invalid', 'the owner leaves with group_leave'} end
    if is_member(ARGV[i]) then gone[#gone + 1] = ARGV[i] end
  end
  if #gone > 0 then
    local before = members()
    for i = 1, #gone do redis.call('ZREM', KEYS[2], gone[i]) end
    local r, seq = store(ARGV[12], sys_fields('removed', gone), before, false)
    stored[1] = r
    for i = 1, #gone do
      redis.call('HSET', KEYS[3], gone[i], seq)
      -- A former member cannot `read` the group: its unread count goes.
      redis.call('HDEL', P .. 'unread:' .. gone[i], conv)
    end
  end
elseif op == 'leave' then
  if not is_member(actor) then return {'forbidden', 'not a member of this group'} end
  local before = members()
  redis.call('ZREM', KEYS[2], actor)
  local r, seq = store(ARGV[12], sys_fields('left', {actor}), before, false)
  stored[1] = r
  redis.call('HSET', KEYS[3], actor, seq)
  redis.call('HDEL', P .. 'unread:' .. actor, conv)
  if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  elseif owner == actor then
    local next_owner = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
    redis.call('HSET', KEYS[1], 'owner', next_owner)
    stored[2] = store(ARGV[13], sys_fields('owner', {next_owner}), members(), false)
  end
else
  return {'invalid', 'unknown group operation'}
end

-- Where the recipients' sessions are, each once.
local routes = {}
if ARGV[14] == '1' then
  local seen = {}
  for i = 1, #stored do
    local got = stored[i][2]
    for j = 1, #got, 2 do
      local u = got[j]
      if not seen[u] then
        seen[u] = true
        routes[#routes + 1] = u
        routes[#routes + 1] = redis.call('HGETALL', P .. 'presence:' .. u)
      end
    end
  end
end
local out = {'ok', info(), members(), routes, push_dropped}
for i = 1, #stored do out[#out + 1] = stored[i] end
return out
