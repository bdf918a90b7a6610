-- Removes presence entries of one node, compare-and-delete on the instance:
-- mode 'keep' removes every entry NOT of ARGV[2] (a node starting clears
-- what its previous run left); mode 'drop' removes only entries OF ARGV[2]
-- (the operator clearing a run it judged gone). Entries that belong to
-- another run are never touched in 'drop' mode.
-- One call handles one SSCAN page of the node's user set, so Redis never
-- stalls for the whole set: the caller starts with cursor '0' and calls
-- again with the returned cursor until it is '0'. Each entry is checked
-- and removed within one call, so the compare-and-delete stays atomic per
-- entry; an entry added between calls is of a live run and is judged on
-- its own.
-- KEYS: 1 user set of the node
-- ARGV: 1 port, 2 instance, 3 presence key prefix, 4 mode,
--       5 cursor, 6 batch size (SSCAN COUNT)
-- Returns {next cursor, entries removed, members looked at}.
local page = redis.call('SSCAN', KEYS[1], ARGV[5], 'COUNT', ARGV[6])
local removed = 0
for _, user in ipairs(page[2]) do
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
return {page[1], removed, #page[2]}
