-- Compare-and-delete of one consumer of a feed's group (archive or push),
-- judged gone by the operator: removed only while it has no pending
-- entries. XGROUP DELCONSUMER drops a consumer's pending entries from the
-- group, and entries no consumer holds are never claimed, so they would
-- never reach the archive or the webhook; a consumer with entries waits
-- until live consumers have claimed them (XAUTOCLAIM after the claim
-- timeout). Check and delete are one step: no entry can be delivered to
-- it in between. (feed_group.lua comes first.)
-- KEYS: 1 feed stream
-- ARGV: 1 consumer group, 2 consumer name
-- Returns {'removed', 0}, {'absent', 0} or {'pending', entries}.
for _, c in ipairs(group_consumers(KEYS[1], ARGV[1])) do
  if c['name'] == ARGV[2] then
    if c['pending'] > 0 then
      return {'pending', c['pending']}
    end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return {'removed', 0}
  end
end
return {'absent', 0}
