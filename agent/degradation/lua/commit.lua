-- Compare-and-set of the degradation state, its audit entries and the change announcement,
-- in one atomic step so that any agent may take any webhook and all of them converge.
--
-- KEYS[1]  state hash: fields `version` (integer as text) and `doc` (the state JSON)
-- KEYS[2]  audit stream: one entry per audit record, field `entry` (JSON)
-- ARGV[1]  the version the writer read (the state's current version must still be this)
-- ARGV[2]  the new state JSON
-- ARGV[3]  the new version (equal to ARGV[1] for an audit-only write)
-- ARGV[4]  the pub/sub channel announcing a new version
-- ARGV[5]  approximate maximum length of the audit stream
-- ARGV[6…] audit entries, JSON each
--
-- Returns {1, new version} when stored, {0, current version} when another writer was first.
local current = redis.call('HGET', KEYS[1], 'version') or '0'
if current ~= ARGV[1] then
  return {0, current}
end
redis.call('HSET', KEYS[1], 'version', ARGV[3], 'doc', ARGV[2])
for i = 6, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'entry', ARGV[i])
end
if ARGV[3] ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[4], ARGV[3])
end
return {1, ARGV[3]}
