-- Removes presence entries of one node, compare-and-delete on the instance:
-- mode 'keep' removes every entry NOT of ARGV[2] (a node starting clears
-- what its previous run left); mode 'drop' removes only entries OF ARGV[2]
-- (the operator clearing a run it judged gone). Entries that belong to
-- another run are never touched in 'drop' mode.
-- KEYS: 1 user set of the node
-- ARGV: 1 port, 2 instance, 3 presence key prefix, 4 mode
local removed = 0
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[3] .. user
  local owner = redis.call('HGET', key, ARGV[1])
  local hit
  if ARGV[4] == 'keep' then hit = owner ~= ARGV[2] else hit = owner == ARGV[2] end
  if hit then
    if owner then redis.call('HDEL', key, ARGV[1]) end
    redis.call('SREM', KEYS[1], user)
    removed = removed + 1
  elseif not owner then
    redis.call('SREM', KEYS[1], user)
  end
end
return removed
