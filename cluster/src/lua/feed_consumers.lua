-- The consumers of a feed's consumer group (the archive feed's or the push
-- feed's), for the operator's collection, read in one step. A stream or
-- group that does not exist has no consumers: that is no error.
-- (feed_group.lua comes first.)
-- KEYS: 1 feed stream
-- ARGV: 1 consumer group
-- Returns {{name, pending entries, idle ms}, ...}.
local out = {}
for _, c in ipairs(group_consumers(KEYS[1], ARGV[1])) do
  table.insert(out, {c['name'], c['pending'], c['idle']})
end
return out
