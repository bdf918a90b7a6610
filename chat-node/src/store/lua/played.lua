-- Marks a voice message played by its receiver.
-- KEYS: 1 message hash
-- ARGV: 1 user
-- Returns {'played', HGETALL} or {'not_found'} / {'forbidden'} / {'not_voice'}.
local f = redis.call('HMGET', KEYS[1], 'to', 'kind')
if not f[1] then return {'not_found'} end
if f[1] ~= ARGV[1] then return {'forbidden'} end
if f[2] ~= 'voice' then return {'not_voice'} end
redis.call('HSET', KEYS[1], 'played', '1')
return {'played', redis.call('HGETALL', KEYS[1])}
