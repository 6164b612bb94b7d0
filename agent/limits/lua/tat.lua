-- GCRA, token bucket and leaky bucket (arithmetic.tat): one theoretical arrival time per key.
--
-- A fragment of the script `decide.lua` runs: it defines STRATEGIES[1].
-- KEYS     the key's TAT: a string holding whole microseconds of Redis TIME (absent at rest),
--          with a PX TTL until the TAT, after which it no longer changes any decision
-- params   a = emission interval (µs), b = capacity (burst), c = 1 for shaping (leaky bucket)
-- check    returns admitted (0/1), remaining, retry µs, reset µs, delay µs, new TAT
-- commit   stores the new TAT (a cost of 0 changes nothing worth storing)
local function tat_check(key, now, cost, interval, capacity, shaping)
  local state = tonumber(redis.call('GET', key))
  local base = now
  if state ~= nil and state > now then
    base = state
  end
  local window = capacity * interval
  local new_tat = base + cost * interval
  if new_tat - now > window then
    local remaining = math.floor((window - (base - now)) / interval)
    return 0, remaining, new_tat - window - now, base - now, 0, nil
  end
  local remaining = math.floor((window - (new_tat - now)) / interval)
  local delay = 0
  if shaping == 1 then
    delay = base - now
  end
  return 1, remaining, 0, new_tat - now, delay, new_tat
end

local function tat_commit(key, now, cost, new_tat)
  if cost > 0 then
    -- Whole milliseconds past the TAT, so the key never expires while it still counts.
    redis.call('SET', key, string.format('%.0f', new_tat), 'PX',
      math.floor((new_tat - now) / 1000) + 1)
  end
end

STRATEGIES[1] = {check = tat_check, commit = tat_commit}
