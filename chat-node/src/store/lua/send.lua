-- Stores one message atomically, or recognises a retried client id.
-- KEYS: 1 client-id key, 2 conversation seq counter, 3 conversation zset,
--       4 message hash, 5 sender inbox, 6 sender pts counter,
--       7 receiver inbox, 8 receiver pts counter, 9 receiver unread hash,
--       10 sender presence hash, 11 receiver presence hash
-- ARGV: 1 id, 2 conv, 3 from, 4 to, 5 kind, 6 body, 7 media JSON or '',
--       8 ts ms, 9 client-id ttl ms, 10 retention entries, 11 retention cutoff ms,
--       12 message key prefix, 13 '1' for voice, 14 '1' to return presence
-- Returns {1, HGETALL of the first message} for a known client id,
-- else {0, seq, sender pts, receiver pts or 0} followed, when asked for, by
-- HGETALL of the sender's and the receiver's presence (read in this same
-- atomic step, so a session opening concurrently is listed or sees the
-- message in its starting pts).
local first = redis.call('GET', KEYS[1])
if first then
  return {1, redis.call('HGETALL', ARGV[12] .. first)}
end

local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
local fields = {'id', ARGV[1], 'conv', ARGV[2], 'seq', seq, 'from', ARGV[3], 'to', ARGV[4],
                'kind', ARGV[5], 'body', ARGV[6], 'ts', ARGV[8]}
if ARGV[7] ~= '' then
  fields[#fields + 1] = 'media'; fields[#fields + 1] = ARGV[7]
end
if ARGV[13] == '1' then
  fields[#fields + 1] = 'played'; fields[#fields + 1] = '0'
end
redis.call('HSET', KEYS[4], unpack(fields))

local max_entries = tonumber(ARGV[10])
local cutoff = tonumber(ARGV[11])
-- Appends to an inbox, then drops its oldest entries while they are both
-- beyond the newest max_entries and older than the cutoff (bounded work).
local function append(inbox, pts_key)
  local pts = redis.call('INCR', pts_key)
  redis.call('ZADD', inbox, pts, ARGV[1])
  -- An inbox never holds more entries than were ever appended (pts).
  if pts <= max_entries then return pts end
  local excess = redis.call('ZCARD', inbox) - max_entries
  local dropped = 0
  while excess > 0 and dropped < 100 do
    local oldest = redis.call('ZRANGE', inbox, 0, 0)[1]
    local ts = tonumber(redis.call('HGET', ARGV[12] .. oldest, 'ts') or '0')
    if ts >= cutoff then break end
    redis.call('ZREMRANGEBYRANK', inbox, 0, 0)
    excess = excess - 1
    dropped = dropped + 1
  end
  return pts
end

local sender_pts = append(KEYS[5], KEYS[6])
local receiver_pts = 0
if ARGV[3] ~= ARGV[4] then
  receiver_pts = append(KEYS[7], KEYS[8])
  redis.call('HINCRBY', KEYS[9], ARGV[3], 1)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[9])
if ARGV[14] == '1' then
  return {0, seq, sender_pts, receiver_pts,
          redis.call('HGETALL', KEYS[10]), redis.call('HGETALL', KEYS[11])}
end
return {0, seq, sender_pts, receiver_pts}
