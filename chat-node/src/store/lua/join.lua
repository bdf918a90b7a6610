-- A user's session opened on a node: record presence and return the user's
-- newest inbox position, in one round trip (so nothing stored after this
-- can miss both the inbox position and the delivery). Returns -1, and
-- records nothing, when the session's token is gone (revoked or expired
-- since the node checked it): a revocation either is seen here or comes
-- after this and finds the session registered.
-- KEYS: 1 presence hash of the user, 2 user set of the node, 3 inbox pts
--       counter, 4 token hash
-- ARGV: 1 port, 2 instance, 3 user
if redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return tonumber(redis.call('GET', KEYS[3]) or '0')
