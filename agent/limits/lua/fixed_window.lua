-- Fixed window (arithmetic.fixed_window): a counter per aligned window [k*period, (k+1)*period).
--
-- A fragment of the script `decide.lua` runs: it defines STRATEGIES[2].
-- KEYS     the key's window: the string "<window start µs>:<count>" (absent at rest), with a
--          PX TTL until the window ends
-- params   a = limit, b = period (µs), c unused
-- check    returns admitted (0/1), remaining, retry µs, reset µs, delay µs (0), new count
-- commit   stores the window's new count
local function fixed_check(key, now, cost, limit, period)
  local start = now - now % period
  local count = 0
  local stored = redis.call('GET', key)
  if stored then
    local at, counted = string.match(stored, '^(%d+):(%d+)$')
    if tonumber(at) == start then
      count = tonumber(counted)
    end
  end
  local ends = start + period - now
  if count + cost > limit then
    return 0, limit - count, ends, ends, 0, nil
  end
  count = count + cost
  return 1, limit - count, 0, ends, 0, count
end

local function fixed_commit(key, now, cost, count, limit, period)
  if cost > 0 then
    local start = now - now % period
    redis.call('SET', key, string.format('%.0f:%.0f', start, count), 'PX',
      math.floor((start + period - now) / 1000) + 1)
  end
end

STRATEGIES[2] = {check = fixed_check, commit = fixed_commit}
