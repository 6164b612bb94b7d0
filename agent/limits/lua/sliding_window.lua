-- Sliding window counter (arithmetic.sliding_window): previous * (unexpired share) + current.
--
-- A fragment of the script `decide.lua` runs: it defines STRATEGIES[3].
-- KEYS     the key's windows: the string "<window start µs>:<current>:<previous>" (absent at
--          rest), with a PX TTL until the end of the window after it, when neither count
--          weighs any more
-- params   a = limit, b = period (µs), c unused
-- check    returns admitted (0/1), remaining, retry µs, reset µs, delay µs (0), new state
-- commit   stores the new counts
--
-- Everything is compared multiplied by `period`, in integers: the storage refuses limits
-- whose limit * period could leave the doubles' exact range (2^53).
local function sliding_reset(current, previous, elapsed, period)
  if current > 0 then
    return 2 * period - elapsed
  end
  if previous > 0 then
    return period - elapsed
  end
  return 0
end

local function sliding_retry(current, previous, elapsed, cost, limit, period)
  if current + cost <= limit then
    -- Later in this window, as the previous window's weight decays.
    local needed = period - math.floor((limit - current - cost) * period / previous)
    return needed - elapsed
  end
  -- In the next window, where this window's count is the previous one.
  local needed = period - math.floor((limit - cost) * period / current)
  return period - elapsed + needed
end

local function sliding_check(key, now, cost, limit, period)
  local start = now - now % period
  local current, previous = 0, 0
  local stored = redis.call('GET', key)
  if stored then
    local at, c, p = string.match(stored, '^(%d+):(%d+):(%d+)$')
    at = tonumber(at)
    if at == start then
      current, previous = tonumber(c), tonumber(p)
    elseif at == start - period then
      previous = tonumber(c)
    end
  end
  local elapsed = now - start
  local room = limit * period - previous * (period - elapsed) - current * period
  if cost * period > room then
    local remaining = math.floor(room / period)
    if remaining < 0 then
      remaining = 0
    end
    return 0, remaining, sliding_retry(current, previous, elapsed, cost, limit, period),
      sliding_reset(current, previous, elapsed, period), 0, nil
  end
  current = current + cost
  local remaining = math.floor((room - cost * period) / period)
  return 1, remaining, 0, sliding_reset(current, previous, elapsed, period), 0,
    {start, current, previous}
end

local function sliding_commit(key, now, cost, state, limit, period)
  if cost > 0 then
    redis.call('SET', key, string.format('%.0f:%.0f:%.0f', state[1], state[2], state[3]), 'PX',
      math.floor((state[1] + 2 * period - now) / 1000) + 1)
  end
end

STRATEGIES[3] = {check = sliding_check, commit = sliding_commit}
