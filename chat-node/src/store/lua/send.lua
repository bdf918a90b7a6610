-- Stores one message atomically, or recognises a retried client id.
-- KEYS: 1 client-id hash of this bucket, 2 conversation list, 3 message hash,
--       4 sender inbox list, 5 sender pts counter,
--       6 receiver inbox list, 7 receiver pts counter, 8 receiver unread hash,
--       9 sender presence hash, 10 receiver presence hash,
--       11 conversation seq counter, 12 archive stream,
--       13 sender's conversation list, 14 receiver's conversation list,
--       15 push feed stream, 16 client-id hash of the bucket before
-- ARGV: 1 id, 2 conv, 3 from, 4 to, 5 kind, 6 body, 7 media JSON or '',
--       8 ts ms, 9 when this bucket's client-id hash expires (ms since
--       the epoch), 10 retention entries, 11 retention cutoff ms,
--       12 message key prefix, 13 '1' for voice, 14 '1' to return presence,
--       15 '1' when an archive is configured, 16 most archive lag (entries),
--       17 most push feed entries ('0': no push webhook), 18 client id
-- Returns {1, HGETALL of the first message, its sender pts, its receiver pts
-- or 0, 0} for a known client id (the retry is answered and delivered again
-- with the same positions, so devices drop what they already have, and is
-- not pushed again), else {0, seq, sender pts, receiver pts or 0, pushes
-- dropped (0 or 1)}, or {-1, lag} (nothing stored)
-- when the archive feed holds the most entries allowed; either followed, when asked for,
-- by HGETALL of the sender's and the receiver's presence (read in this same
-- atomic step, so a session opening concurrently is listed or sees the
-- message in its starting pts).
--
-- A client id is looked up in its sender's hash of this time bucket and of
-- the one before (cluster/src/keys.rs, client_id_buckets), and recorded in
-- this bucket's as '<message id>:<sender pts>:<receiver pts>'.
--
-- Conversations and inboxes are lists, appended to and trimmed only from the
-- front, so positions follow from lengths (cheaper and smaller than zsets):
-- a conversation's first message in Redis has seq = seq counter - length + 1
-- (without an archive nothing is trimmed, and a conversation stored before
-- the counter existed has length = last seq); an inbox grows by one entry
-- per pts increment, so its first entry has pts = pts counter - length + 1.
--
-- An inbox entry is '<id>:<ts>:<seq>:<conv>' (or a bare id, when written
-- before): enough to apply retention and to find the message in the archive
-- once it has left Redis.
--
-- With an archive, the message is also appended to the archive feed, in
-- this same step: no acknowledged message can miss the archive. With a push
-- webhook, a receiver with no live session anywhere (an empty presence
-- hash, read in this step) gets a push feed entry, unless the feed is full
-- (then the push is dropped and counted, and the message stored all the
-- same): pushers deliver it at least once, whatever node crashes.
local function presence(reply)
  if ARGV[14] == '1' then
    reply[#reply + 1] = redis.call('HGETALL', KEYS[9])
    reply[#reply + 1] = redis.call('HGETALL', KEYS[10])
  end
  return reply
end

local first = redis.call('HGET', KEYS[1], ARGV[18]) or redis.call('HGET', KEYS[16], ARGV[18])
if first then
  -- A value without positions (written before they were kept) is
  -- answered but not delivered again.
  local id, spts, rpts = string.match(first, '^([^:]+):(%d+):(%d+)$')
  if not id then id, spts, rpts = first, 0, 0 end
  return presence({1, redis.call('HGETALL', ARGV[12] .. id), tonumber(spts), tonumber(rpts), 0})
end

local archive = ARGV[15] == '1'
if archive then
  local lag = redis.call('XLEN', KEYS[12])
  if lag >= tonumber(ARGV[16]) then return presence({-1, lag}) end
end

local seq = redis.call('INCR', KEYS[11])
if seq == 1 then
  local stored = redis.call('LLEN', KEYS[2])
  if stored > 0 then
    seq = stored + 1
    redis.call('SET', KEYS[11], seq)
  end
end
redis.call('RPUSH', KEYS[2], ARGV[1])
local fields = {'id', ARGV[1], 'conv', ARGV[2], 'seq', seq, 'from', ARGV[3], 'to', ARGV[4],
                'kind', ARGV[5], 'body', ARGV[6], 'ts', ARGV[8]}
if ARGV[7] ~= '' then
  fields[#fields + 1] = 'media'; fields[#fields + 1] = ARGV[7]
end
if ARGV[13] == '1' then
  fields[#fields + 1] = 'played'; fields[#fields + 1] = '0'
end
redis.call('HSET', KEYS[3], unpack(fields))

if archive then
  redis.call('XADD', KEYS[12], '*', 'i', ARGV[1], 'c', ARGV[2], 's', seq)
end

local max_entries = tonumber(ARGV[10])
local cutoff = tonumber(ARGV[11])
local entry = ARGV[1] .. ':' .. ARGV[8] .. ':' .. seq .. ':' .. ARGV[2]
-- The time of an inbox entry.
local function entry_ts(e)
  local ts = string.match(e, '^[^:]+:(%d+):')
  if ts then return tonumber(ts) end
  return tonumber(redis.call('HGET', ARGV[12] .. e, 'ts') or '0')
end
-- Appends to an inbox, then drops its oldest entries while they are both
-- beyond the newest max_entries and older than the cutoff (bounded work).
local function append(inbox, pts_key)
  local pts = redis.call('INCR', pts_key)
  local excess = redis.call('RPUSH', inbox, entry) - max_entries
  local dropped = 0
  while excess > 0 and dropped < 100 do
    local ts = entry_ts(redis.call('LINDEX', inbox, 0))
    if ts >= cutoff then break end
    redis.call('LPOP', inbox)
    excess = excess - 1
    dropped = dropped + 1
  end
  return pts
end

local sender_pts = append(KEYS[4], KEYS[5])
local receiver_pts = 0
local push_dropped = 0
if ARGV[3] ~= ARGV[4] then
  receiver_pts = append(KEYS[6], KEYS[7])
  redis.call('HINCRBY', KEYS[8], ARGV[3], 1)
  redis.call('ZADD', KEYS[14], 'GT', ARGV[8], ARGV[2])
  local max_push = tonumber(ARGV[17])
  if max_push > 0 and redis.call('HLEN', KEYS[10]) == 0 then
    if redis.call('XLEN', KEYS[15]) < max_push then
      redis.call('XADD', KEYS[15], '*', 'u', ARGV[4], 'i', ARGV[1])
    else
      push_dropped = 1
    end
  end
end
redis.call('ZADD', KEYS[13], 'GT', ARGV[8], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[18], ARGV[1] .. ':' .. sender_pts .. ':' .. receiver_pts)
redis.call('PEXPIREAT', KEYS[1], ARGV[9])
return presence({0, seq, sender_pts, receiver_pts, push_dropped})
