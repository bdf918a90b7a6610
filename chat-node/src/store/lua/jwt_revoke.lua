-- Revokes a JWT jti: marks it revoked until its token's exp (known from
-- the record of its sessions, else ARGV[1]) and deletes that record, in one
-- step (see jwt_put.lua).
-- KEYS: 1 token hash of the jti's sessions, 2 revoked-jti key
-- ARGV: 1 expiry ms when no session recorded one, 2 now ms
-- Returns HGETALL of the record before it was deleted (empty when none).
local record = redis.call('HGETALL', KEYS[1])
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or ARGV[1])
if until_ms > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1')
  redis.call('PEXPIREAT', KEYS[2], until_ms)
end
redis.call('DEL', KEYS[1])
return record
