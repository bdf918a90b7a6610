-- Which runs (instance ids) of the node on a port have left anything in
-- Redis: its registry details, and the presence entries it recorded.
-- KEYS: 1 node details hash, 2 user set of the node
-- ARGV: 1 port, 2 presence key prefix
-- Returns a flat list of distinct instance ids.
local seen, out = {}, {}
local function add(i)
  if i and not seen[i] then seen[i] = true; out[#out + 1] = i end
end
add(redis.call('HGET', KEYS[1], 'instance'))
for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  add(redis.call('HGET', ARGV[2] .. user, ARGV[1]))
end
return out
