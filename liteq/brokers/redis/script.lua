-- liteq dispatch: KEYS[1] = namespace; ARGV = now, worker id ('' for none),
-- heartbeat timeout, dead message ttl, a reserved field, then a stream of operations
-- (E enqueue, A ack, N nack, R requeue, P promote, F fetch, M maintenance, W release
-- dead workers, C close, X flush, H publish the worker's registry entry, Q requeue a
-- dead letter, D delete a dead letter); returns (queue, id, body) triples for what F
-- fetched (W, X, Q and D, alone in a call, push counts of what they moved instead).
-- E records its queue in ns:__liteq__.queues (once per call), for liteq's inspector.
-- A and N add to the queue's lifetime counters (ns:__liteq__.counts.<queue>, a hash of
-- succeeded, failed, retried, dead_lettered), written once per queue at the end.
local ns = KEYS[1]
local now = tonumber(ARGV[1])
local worker = ARGV[2]
local heartbeat_timeout = tonumber(ARGV[3])
local dead_ttl = tonumber(ARGV[4])
local heartbeats = ns .. ":__heartbeats__"
local registry = ns .. ":__liteq__.workers"
if worker ~= "" then
  redis.call("zadd", heartbeats, now, worker)
end

local function base(q)
  local tail = string.sub(q, -3)
  if tail == ".DQ" or tail == ".XQ" then return string.sub(q, 1, -4) end
  return q
end
local function acks_of(w, q) return ns .. ":__acks__." .. w .. "." .. q end
local function poke(q)
  local key = ns .. ":__liteq__.notify." .. base(q)
  if redis.call("llen", key) == 0 then redis.call("rpush", key, "1") end
end
local function glob_escape(s) return (string.gsub(s, "([%*%?%[%]\\])", "\\%1")) end
local function forget(w)
  redis.call("zrem", heartbeats, w)
  redis.call("hdel", registry, w)
end

-- The score of a dead letter in q.XQ: the time it died (ms, as Dramatiq scores it),
-- plus a thousandth per earlier death in the same millisecond, so that dead letters
-- list in the order they died.
local function death_score()
  local clock = ns .. ":__liteq__.dead_clock"
  local last = redis.call("hmget", clock, "ms", "n")
  local n = 0
  if tonumber(last[1]) == now then n = tonumber(last[2]) + 1 end
  redis.call("hset", clock, "ms", now, "n", n)
  return now + math.min(n, 999) / 1000
end

-- Lifetime counters, summed per queue over the call: queue -> {field -> n}.
local tally = {}
local function tally_add(q, field)
  local t = tally[q]
  if not t then t = {}; tally[q] = t end
  t[field] = (t[field] or 0) + 1
end

local function expire_dead(q)
  local xq = ns .. ":" .. base(q) .. ".XQ"
  local ids = redis.call("zrangebyscore", xq, 0, now - dead_ttl, "LIMIT", 0, 1000)
  for _, id in ipairs(ids) do
    redis.call("zrem", xq, id)
    redis.call("hdel", xq .. ".msgs", id)
  end
end

-- Return the messages worker w fetched from q and did not acknowledge to q; how many.
local function requeue_acks(w, q)
  local key = acks_of(w, q)
  local ids = redis.call("smembers", key)
  local msgs = ns .. ":" .. q .. ".msgs"
  local moved = 0
  for _, id in ipairs(ids) do
    if redis.call("hexists", msgs, id) == 1 then
      redis.call("rpush", ns .. ":" .. q, id)
      moved = moved + 1
    end
  end
  if #ids > 0 then redis.call("del", key) end
  if moved > 0 then poke(q) end
  return moved
end

local function maintenance(queues)
  local dead = redis.call("zrangebyscore", heartbeats, 0, now - heartbeat_timeout)
  for _, w in ipairs(dead) do
    for _, q in ipairs(queues) do requeue_acks(w, q) end
    local left = redis.call("keys", glob_escape(ns .. ":__acks__." .. w) .. "*")
    if #left == 0 then forget(w) end
  end
  for _, q in ipairs(queues) do expire_dead(q) end
end

-- Worker w is known to be dead: requeue what it holds on every queue, forget it.
local function release_worker(w)
  local prefix = ns .. ":__acks__." .. w .. "."
  local moved = 0
  for _, key in ipairs(redis.call("keys", glob_escape(prefix) .. "*")) do
    moved = moved + requeue_acks(w, string.sub(key, #prefix + 1))
  end
  forget(w)
  return moved
end

local out = {}
local known = {}  -- queues this call recorded in ns:__liteq__.queues
local i = 6
local n = #ARGV
while i <= n do
  local op = ARGV[i]
  if op == "E" then  -- enqueue: queue, id, body
    local key = ns .. ":" .. ARGV[i + 1]
    redis.call("hset", key .. ".msgs", ARGV[i + 2], ARGV[i + 3])
    redis.call("rpush", key, ARGV[i + 2])
    poke(ARGV[i + 1])
    local q = base(ARGV[i + 1])
    if not known[q] then
      known[q] = true
      redis.call("sadd", ns .. ":__liteq__.queues", q)
    end
    i = i + 4
  elseif op == "A" then  -- ack: queue, id, "1" if the attempt raised and was retried
    local q, id = ARGV[i + 1], ARGV[i + 2]
    if redis.call("srem", acks_of(worker, q), id) == 1 then
      redis.call("hdel", ns .. ":" .. q .. ".msgs", id)
      if ARGV[i + 3] == "1" then
        tally_add(base(q), "failed")
        tally_add(base(q), "retried")
      else
        tally_add(base(q), "succeeded")
      end
    end
    i = i + 4
  elseif op == "N" then  -- nack (dead-letter): queue, id, body to keep ('' = the stored
    -- one), "1" if an attempt failed (not for a body that did not decode)
    local q, id = ARGV[i + 1], ARGV[i + 2]
    if redis.call("srem", acks_of(worker, q), id) == 1 then
      local msgs = ns .. ":" .. q .. ".msgs"
      local body = redis.call("hget", msgs, id)
      if body then
        if ARGV[i + 3] ~= "" then body = ARGV[i + 3] end
        local xq = ns .. ":" .. base(q) .. ".XQ"
        redis.call("zadd", xq, death_score(), id)
        redis.call("hset", xq .. ".msgs", id, body)
        redis.call("hdel", msgs, id)
        if ARGV[i + 4] == "1" then tally_add(base(q), "failed") end
        tally_add(base(q), "dead_lettered")
      end
    end
    i = i + 5
  elseif op == "R" then  -- requeue: queue, id
    local q, id = ARGV[i + 1], ARGV[i + 2]
    if redis.call("srem", acks_of(worker, q), id) == 1
        and redis.call("hexists", ns .. ":" .. q .. ".msgs", id) == 1 then
      redis.call("rpush", ns .. ":" .. q, id)
      poke(q)
    end
    i = i + 3
  elseif op == "P" then  -- promote a due delayed message: dq, old id, q, new id, body
    local dq, old, q, id = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    if redis.call("srem", acks_of(worker, dq), old) == 1
        and redis.call("hdel", ns .. ":" .. dq .. ".msgs", old) == 1 then
      local key = ns .. ":" .. q
      redis.call("hset", key .. ".msgs", id, ARGV[i + 5])
      redis.call("rpush", key, id)
      poke(q)
    end
    i = i + 6
  elseif op == "F" then  -- fetch: budget, count, queues...; round robin over the queues
    local budget = tonumber(ARGV[i + 1])
    local count = tonumber(ARGV[i + 2])
    local active = {}
    for j = 1, count do active[j] = ARGV[i + 2 + j] end
    while budget > 0 and #active > 0 do
      local still = {}
      for _, q in ipairs(active) do
        if budget > 0 then
          local key = ns .. ":" .. q
          local id = redis.call("lpop", key)
          if id then
            local body = redis.call("hget", key .. ".msgs", id)
            if body then
              redis.call("sadd", acks_of(worker, q), id)
              out[#out + 1] = q
              out[#out + 1] = id
              out[#out + 1] = body
              budget = budget - 1
            end
            still[#still + 1] = q
          end
        else
          still[#still + 1] = q
        end
      end
      active = still
    end
    -- Messages left behind: leave a token so that another idle consumer wakes up.
    for _, q in ipairs(active) do
      if redis.call("llen", ns .. ":" .. q) > 0 then poke(q) end
    end
    i = i + 3 + count
  elseif op == "M" then  -- maintenance: count, queues...
    local count = tonumber(ARGV[i + 1])
    local queues = {}
    for j = 1, count do queues[j] = ARGV[i + 1 + j] end
    maintenance(queues)
    i = i + 2 + count
  elseif op == "W" then  -- release dead workers now: count, worker ids...; adds a count
    local count = tonumber(ARGV[i + 1])
    local moved = 0
    for j = 1, count do moved = moved + release_worker(ARGV[i + 1 + j]) end
    out[#out + 1] = moved
    i = i + 2 + count
  elseif op == "C" then  -- closing consumer: count, queues...; forget it if it holds nothing
    local n_queues = tonumber(ARGV[i + 1])
    local holds = 0
    for j = 1, n_queues do holds = holds + redis.call("scard", acks_of(worker, ARGV[i + 1 + j])) end
    if worker ~= "" then
      if holds == 0 then forget(worker) else redis.call("hdel", registry, worker) end
    end
    i = i + 2 + n_queues
  elseif op == "X" then  -- flush: queue (its list, bodies and every worker's ack set);
    -- pushes how many bodies it deleted
    local q = ARGV[i + 1]
    out[#out + 1] = redis.call("hlen", ns .. ":" .. q .. ".msgs")
    redis.call("del", ns .. ":" .. q, ns .. ":" .. q .. ".msgs")
    for _, w in ipairs(redis.call("zrange", heartbeats, 0, -1)) do
      redis.call("del", acks_of(w, q))
    end
    i = i + 2
  elseif op == "H" then  -- publish this worker's registry entry: its JSON
    if worker ~= "" then redis.call("hset", registry, worker, ARGV[i + 1]) end
    i = i + 2
  elseif op == "Q" then  -- requeue a dead letter: queue, id, body; pushes 1 if it moved
    local q, id = ARGV[i + 1], ARGV[i + 2]
    local xq = ns .. ":" .. q .. ".XQ"
    local moved = 0
    if redis.call("zrem", xq, id) == 1 then
      redis.call("hdel", xq .. ".msgs", id)
      local key = ns .. ":" .. q
      redis.call("hset", key .. ".msgs", id, ARGV[i + 3])
      redis.call("rpush", key, id)
      poke(q)
      moved = 1
    end
    out[#out + 1] = moved
    i = i + 4
  elseif op == "D" then  -- delete a dead letter: queue, id; pushes 1 if it was there
    local xq = ns .. ":" .. ARGV[i + 1] .. ".XQ"
    local gone = redis.call("zrem", xq, ARGV[i + 2])
    redis.call("hdel", xq .. ".msgs", ARGV[i + 2])
    out[#out + 1] = gone
    i = i + 3
  else
    return redis.error_reply("liteq dispatch: unknown operation " .. tostring(op))
  end
end
for q, fields in pairs(tally) do
  local key = ns .. ":__liteq__.counts." .. q
  for field, n in pairs(fields) do redis.call("hincrby", key, field, n) end
end
return out
