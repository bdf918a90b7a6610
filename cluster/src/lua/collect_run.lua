-- Garbage collection of one node run's registry entry, judged gone by the
-- operator. It compares the instance id first, so a node that came back on
-- the same port (a new run) is never touched. (Its presence entries are
-- removed by clear_presence.lua in 'drop' mode, the same compare-and-delete.)
-- KEYS: 1 ports hash, 2 node details hash
-- ARGV: 1 port, 2 instance judged gone,
--       3 'retire' (remove registry entry and details: the ordinal is gone
--       for good) or 'reset' (the pod will come back: zero its online count
--       and readiness, keep the entry)
-- Returns how many registry entries were removed or reset.
local owner = redis.call('HGET', KEYS[2], 'instance')
if owner == ARGV[2] then
  if ARGV[3] == 'retire' then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('DEL', KEYS[2])
  else
    redis.call('HSET', KEYS[1], ARGV[1], 0)
    redis.call('HSET', KEYS[2], 'online', 0, 'ready', 0)
  end
  return 1
elseif not owner and ARGV[3] == 'retire' then
  -- Details already gone (the node deregistered itself): a stale ports
  -- field may remain from a run that died between the two writes.
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
