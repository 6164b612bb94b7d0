-- Sliding log (arithmetic.sliding_log): every admission kept until `period` after it.
-- The memory storage keeps one time per unit; an entry here stands for `cost` units of one
-- time, so the k-th oldest unit is in the first entry whose running total reaches k.
--
-- A fragment of the script `decide.lua` runs: it defines STRATEGIES[4].
-- KEYS     the key's log: a list of "<time µs>:<cost>:<running total>" entries, oldest first,
--          where the running total counts every cost since the log was last empty (so the
--          total in the window, and where a retry lands, need no walk over the entries); with
--          a PX TTL of one period after the newest entry
-- params   a = limit, b = period (µs), c unused
-- check    trims what left the window, returns admitted (0/1), remaining, retry µs, reset µs,
--          delay µs (0), and the running total before this admission
-- commit   appends the admission (one entry for its `cost` units; a cost of 0 adds none)
local function log_entry(key, index)
  local entry = redis.call('LINDEX', key, index)
  local stamp, spent, total = string.match(entry, '^(%d+):(%d+):(%d+)$')
  return tonumber(stamp), tonumber(spent), tonumber(total)
end

local function log_check(key, now, cost, limit, period)
  local horizon = now - period
  local size = redis.call('LLEN', key)
  local stamp, spent, running
  while size > 0 do
    stamp, spent, running = log_entry(key, 0)
    if stamp > horizon then
      break
    end
    redis.call('LPOP', key)
    size = size - 1
  end
  if size == 0 then
    return 1, limit - cost, 0, period, 0, 0
  end
  -- What the log held before its oldest entry in the window.
  local base = running - spent
  local last_stamp, _, last_running = log_entry(key, -1)
  local total = last_running - base
  if total + cost <= limit then
    return 1, limit - total - cost, 0, period, 0, last_running
  end
  -- The oldest entry whose leaving makes room for `cost`: the first whose running total,
  -- counted from `base`, reaches the excess. Running totals grow along the list.
  local excess = total + cost - limit
  local low, high = 0, size - 1
  while low < high do
    local middle = math.floor((low + high) / 2)
    local _, _, at = log_entry(key, middle)
    if at - base >= excess then
      high = middle
    else
      low = middle + 1
    end
  end
  local leaving = log_entry(key, low)
  return 0, limit - total, leaving + period - now, last_stamp + period - now, 0, nil
end

local function log_commit(key, now, cost, running, limit, period)
  if cost > 0 then
    redis.call('RPUSH', key, string.format('%.0f:%.0f:%.0f', now, cost, running + cost))
    redis.call('PEXPIRE', key, math.floor(period / 1000) + 1)
  end
end

STRATEGIES[4] = {check = log_check, commit = log_commit}
