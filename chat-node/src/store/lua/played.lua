-- Marks a voice message played by its receiver (in a group: by any member
-- but its sender).
-- KEYS: 1 message hash, 2 archive feed stream
-- ARGV: 1 user, 2 message id, 3 key prefix (for the group's members)
-- Returns {'played', HGETALL} or {'not_found'} / {'forbidden'} / {'not_voice'},
-- or {'archived'} when the message has left Redis (the node asks the archive).
-- A change to a message already archived feeds it again (the archiver
-- writes the row anew, and the message stays in Redis until it has); every
-- change bumps 'rev', so an archiver that read the message before the
-- change does not mark it archived.
local f = redis.call('HMGET', KEYS[1], 'to', 'kind', 'archived', 'conv', 'seq', 'from', 'group')
if not f[6] then return {'archived'} end
if f[7] then
  if f[6] == ARGV[1] then return {'forbidden'} end
  if not redis.call('ZSCORE', ARGV[3] .. 'group:' .. f[7] .. ':members', ARGV[1]) then
    return {'forbidden'}
  end
elseif f[1] ~= ARGV[1] then
  return {'forbidden'}
end
if f[2] ~= 'voice' then return {'not_voice'} end
redis.call('HSET', KEYS[1], 'played', '1')
redis.call('HINCRBY', KEYS[1], 'rev', 1)
if f[3] == '1' then
  redis.call('HSET', KEYS[1], 'archived', '0')
  redis.call('XADD', KEYS[2], '*', 'i', ARGV[2], 'c', f[4], 's', f[5])
end
return {'played', redis.call('HGETALL', KEYS[1])}
