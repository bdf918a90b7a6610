-- Marks a conversation read up to seq and clears the unread count for the peer.
-- KEYS: 1 conversation list, 2 reader's read-marks hash, 3 reader's unread hash,
--       4 the conversation's seq counter (absent: the list's length is the last seq)
-- ARGV: 1 conv, 2 seq, 3 peer
-- Returns {1, last seq} when marked, {0, last seq} when seq is beyond the end.
local last = tonumber(redis.call('GET', KEYS[4]) or redis.call('LLEN', KEYS[1]))
local seq = tonumber(ARGV[2])
if seq > last then return {0, last} end
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if seq > current then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
redis.call('HDEL', KEYS[3], ARGV[3])
return {1, last}
