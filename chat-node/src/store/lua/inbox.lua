-- Shared by group.lua and recall.lua (prepended to each): appending to a
-- member's inbox with retention, exactly as send.lua does. Keys are built
-- from the key prefix P (cluster/src/keys.rs names them).
local function inbox_entry_ts(P, e)
  local ts = string.match(e, '^[^:]+:(%d+):')
  if ts then return tonumber(ts) end
  return tonumber(redis.call('HGET', P .. 'msg:' .. e, 'ts') or '0')
end

-- Appends entry to user's inbox, then drops its oldest entries while they
-- are both beyond the newest max_entries and older than cutoff (bounded).
local function inbox_append(P, user, entry, max_entries, cutoff)
  local pts = redis.call('INCR', P .. 'inbox:' .. user .. ':pts')
  local inbox = P .. 'inbox:' .. user
  local excess = redis.call('RPUSH', inbox, entry) - max_entries
  local dropped = 0
  while excess > 0 and dropped < 100 do
    local ts = inbox_entry_ts(P, redis.call('LINDEX', inbox, 0))
    if ts >= cutoff then break end
    redis.call('LPOP', inbox)
    excess = excess - 1
    dropped = dropped + 1
  end
  return pts
end
