-- Removes a node's registry entry only if it still belongs to the given
-- instance, so a node that came back on the same port is never touched.
-- KEYS: 1 ports hash, 2 node details hash
-- ARGV: 1 port, 2 instance id
if redis.call('HGET', KEYS[2], 'instance') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
