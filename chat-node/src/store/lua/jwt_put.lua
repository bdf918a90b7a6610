-- Records the token of a JWT session, unless its jti was revoked: one
-- step, so a revocation is either seen here or finds the record and kicks
-- the sessions that use it.
-- KEYS: 1 token hash, 2 revoked-jti key
-- ARGV: 1 user, 2 platform, 3 expires_at ms, 4 '1' when the token has a jti
-- Returns 1 when recorded, 0 when the jti is revoked.
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'platform', ARGV[2], 'expires_at', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
