-- Which runs (instance ids) of the node on a port have left anything in
-- Redis: its registry details, and the presence entries it recorded.
-- One call reads one SSCAN page of the node's user set, so Redis never
-- stalls for the whole set: the caller starts with cursor '0', calls again
-- with the returned cursor until it is '0', and unites the answers.
-- KEYS: 1 node details hash, 2 user set of the node
-- ARGV: 1 port, 2 presence key prefix, 3 cursor, 4 batch size (SSCAN COUNT)
-- Returns {next cursor, members looked at, {distinct instance ids}}; the
-- details' instance is among the ids of the first page.
local seen, out = {}, {}
local function add(i)
  if i and not seen[i] then seen[i] = true; out[#out + 1] = i end
end
if ARGV[3] == '0' then add(redis.call('HGET', KEYS[1], 'instance')) end
local page = redis.call('SSCAN', KEYS[2], ARGV[3], 'COUNT', ARGV[4])
for _, user in ipairs(page[2]) do
  add(redis.call('HGET', ARGV[2] .. user, ARGV[1]))
end
return {page[1], #page[2], out}
