-- Shared by the feed consumer scripts (prepended to each): the consumers
-- of group `group` of stream `stream` as tables {name=, pending=, idle=},
-- or an empty list when the stream or the group does not exist.
local function group_consumers(stream, group)
  local function fields(flat)
    local f = {}
    for i = 1, #flat, 2 do
      f[flat[i]] = flat[i + 1]
    end
    return f
  end
  if redis.call('EXISTS', stream) == 0 then
    return {}
  end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    if fields(g)['name'] == group then
      local out = {}
      for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
        table.insert(out, fields(c))
      end
      return out
    end
  end
  return {}
end
