-- A user's last session on a node closed: drop the presence entry, but only
-- if it still belongs to this run of the node.
-- KEYS: 1 presence hash of the user, 2 user set of the node
-- ARGV: 1 port, 2 instance, 3 user
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
return 0
