-- Rate-limit decisions for a batch of requests, each all-or-nothing over its limiter's limits.
--
-- The strategy files (tat.lua, fixed_window.lua, sliding_window.lua, sliding_log.lua) are
-- prepended to this one, in that order, as one script (agent/limits/redisstore/script.py).
-- Time is Redis TIME, read once: every decision of the batch is made at the same microsecond.
--
-- ARGV[1]        S, the number of limit sets in this batch
-- ARGV[2..S+1]   each limit set: four integers per limit, space-separated: strategy
--                (1 tat, 2 fixed window, 3 sliding window, 4 sliding log), then its
--                parameters a b c (see each strategy's header)
-- ARGV[S+2]      per decision, the index of its limit set (1-based) and the cost under
--                every limit; or the index negated, then one cost per limit of the set; all
--                space-separated in one string (one argument is far cheaper to send than many)
-- KEYS           per decision, one state key per limit of its set, in the set's order
--
-- Returns one string of space-separated integers, five per limit of each decision, in order:
-- admitted (0/1), remaining, retry µs, reset µs, delay µs. A decision writes only when every
-- limit admits its cost; a cost above a limit's quota (the caller reports `never`) is checked
-- as a cost of 0, and when a decision is denied the limits that would have admitted report a
-- cost of 0 too: what they hold now, since nothing was spent.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local sets = {}
local count = tonumber(ARGV[1])
for s = 1, count do
  local set = {}
  local numbers = {}
  for word in string.gmatch(ARGV[s + 1], '%S+') do
    numbers[#numbers + 1] = tonumber(word)
  end
  for i = 1, #numbers, 4 do
    local code, a, b, c = numbers[i], numbers[i + 1], numbers[i + 2], numbers[i + 3]
    -- The largest cost the limit can ever admit: capacity for tat, limit for the others.
    local quota = a
    if code == 1 then
      quota = b
    end
    set[#set + 1] = {STRATEGIES[code], a, b, c, quota}
  end
  sets[s] = set
end

local requests = {}
for word in string.gmatch(ARGV[count + 2], '%S+') do
  requests[#requests + 1] = tonumber(word)
end

local out = {}
local k = 0
local verdicts = {}
local at = 1
local costs = {}
while at <= #requests do
  local index = requests[at]
  local set
  if index > 0 then
    set = sets[index]
    for i = 1, #set do
      costs[i] = requests[at + 1]
    end
    at = at + 2
  else
    set = sets[-index]
    for i = 1, #set do
      costs[i] = requests[at + i]
    end
    at = at + 1 + #set
  end
  local all = true
  for i = 1, #set do
    local limit = set[i]
    local spend = costs[i]
    if spend > limit[5] then
      spend = 0
      all = false
    end
    local ok, remaining, retry, reset, delay, state =
      limit[1].check(KEYS[k + i], now, spend, limit[2], limit[3], limit[4])
    if ok == 0 then
      all = false
    end
    verdicts[i] = {ok, remaining, retry, reset, delay, state, spend}
  end
  for i = 1, #set do
    local limit = set[i]
    local v = verdicts[i]
    if all then
      limit[1].commit(KEYS[k + i], now, costs[i], v[6], limit[2], limit[3], limit[4])
    elseif v[1] == 1 and v[7] > 0 then
      v = {limit[1].check(KEYS[k + i], now, 0, limit[2], limit[3], limit[4])}
    end
    out[#out + 1] = string.format('%d %d %d %d %d', v[1], v[2], v[3], v[4], v[5])
  end
  k = k + #set
end
-- One string, not an array: a client parses one bulk reply far faster than many integers.
return table.concat(out, ' ')
