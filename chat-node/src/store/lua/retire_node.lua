-- Garbage collection of one node run judged gone by the operator. Every
-- removal compares the instance id first, so a node that came back on the
-- same port (a new run) is never touched.
-- KEYS: 1 ports hash, 2 node details hash, 3 user set of the node
-- ARGV: 1 port, 2 instance judged gone, 3 presence key prefix,
--       4 'retire' (remove registry entry and details: the ordinal is gone
--       for good) or 'reset' (the pod will come back: clear presence and the
--       online count, keep the entry)
-- Returns {registry entries removed or reset, presence entries removed}.
local owner = redis.call('HGET', KEYS[2], 'instance')
local registry = 0
if owner == ARGV[2] then
  if ARGV[4] == 'retire' then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('DEL', KEYS[2])
  else
    redis.call('HSET', KEYS[1], ARGV[1], 0)
    redis.call('HSET', KEYS[2], 'online', 0, 'ready', 0)
  end
  registry = 1
elseif not owner and ARGV[4] == 'retire' then
  -- Details already gone (the node deregistered itself): a stale ports
  -- field may remain from a run that died between the two writes.
  registry = redis.call('HDEL', KEYS[1], ARGV[1])
end
local presence = 0
for _, user in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local key = ARGV[3] .. user
  local at = redis.call('HGET', key, ARGV[1])
  if at == ARGV[2] then
    redis.call('HDEL', key, ARGV[1])
    redis.call('SREM', KEYS[3], user)
    presence = presence + 1
  elseif not at then
    redis.call('SREM', KEYS[3], user)
  end
end
return {registry, presence}
