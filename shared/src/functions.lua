#!lua name=codegraph
--
-- The Code Graph Live Function library: every graph mutation and its CDC event in one atomic step.
--
-- Each call touches the keys of one project only. KEYS[1] is the project's key prefix `code_graph:{<project>}`;
-- every other key is derived from it, so all of them share the project's hash tag and Redis Cluster slot.
-- A call first checks every operation without writing anything, then applies them; a check that fails returns
-- an error and leaves neither state nor event behind.
--
-- A call writes its state first and its events last. Redis does not roll a Function back when a command fails
-- half-way, so this order is what makes a runtime error leave (at worst) state without its event, never an event
-- without its state. (Redis refuses a call for OOM only at its first write, so OOM cannot stop one half-way.)
-- Events are written to the stream without their id (field `e`) and published with it (the XADD id).
--
-- One call, one entry: `cg_mutate` writes everything it changed as one change set
-- (`{"project","type":"change_set","changes":[{"type","entity","version","data"}…],"ts","trace"}`), one XADD and
-- one publication, however many entities it touched (none when it changed nothing). `cg_emit` and `cg_reset`
-- write one single event each. The writer bounds a call's size (`MAX_CHANGE_SET_BYTES` in functions.rs).
--
-- The stream's length cap (`maxlen`) never trims what a consumer group still needs (see `cap_stream`); `cg_trim`
-- trims below what every group has acknowledged, in one atomic step.
--
-- Bounded work (no call blocks Redis for long, whatever the graph's size):
-- * Generations. The adjacency sets (`out:<node>`, `in:<node>`) live under a generation, `<prefix>:g<n>:…`
--   (generation 0, before the first reset of library 8, is `<prefix>:…` itself); `<prefix>:generation` holds the
--   current one. `cg_reset` is O(1): it RENAMEs the few big keys (nodes, rels, counters, file hashes) aside to
--   `<prefix>:old:<generation>:…`, bumps the generation and records the old one in `<prefix>:sweep`; `cg_sweep`
--   then UNLINKs the old generation's keys a bounded number per call. A current key is never an old one.
-- * Cascades. A `cg_mutate` call deletes at most MAX_CASCADE relationships with the nodes it deletes (CASCADE
--   error otherwise, before any write); `cg_detach` deletes a node's relationships a bounded chunk per call, each
--   one change set, so a node with any number of relationships goes in bounded steps, each a valid graph.
-- LIBRARY_VERSION must grow with every change; services load the library when Redis has an older one.

local LIBRARY_VERSION = 12

-- Most relationships one `cg_mutate` call deletes together with the nodes it deletes (MAX_CASCADE in
-- functions.rs): about 2 ms of Redis time.
local MAX_CASCADE = 100

-- An error reply whose first word is its code (CONFLICT, NOTFOUND, DANGLING, ERR), without a script position.
local function fail(msg)
  error({ err = msg })
end

-- A JSON string literal. Callers validate that ids contain no control characters, so only quote and backslash
-- need escaping (cjson.encode would also turn every '/' of a path into '\/').
local function jstr(s)
  return '"' .. string.gsub(s, '[\\"]', '\\%0') .. '"'
end

-- The inside of a JSON string literal: `s` itself unless it holds a quote or backslash (no new string).
local function jescape(s)
  if string.find(s, '[\\"]') then
    return (string.gsub(s, '[\\"]', '\\%0'))
  end
  return s
end

local function iso_time()
  local t = redis.call('TIME')
  local secs = tonumber(t[1])
  local ms = math.floor(tonumber(t[2]) / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  -- civil_from_days (H. Hinnant)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms)
end

-- The table stored under `key` in `map`, created on first use.
local function table_of(map, key)
  local t = map[key]
  if not t then
    t = {}
    map[key] = t
  end
  return t
end

-- `cmd key item…` for every `per_call` items of `items` (Lua's unpack has a limit, and huge calls block Redis).
local function call_chunked(cmd, key, items, per_call)
  for i = 1, #items, per_call do
    redis.call(cmd, key, unpack(items, i, math.min(i + per_call - 1, #items)))
  end
end

-- Hashes are read and written through a per-call cache: fields are fetched with one HMGET per few hundred
-- operations and written back with one HSET/HDEL at the end of the call, instead of a call per operation.
-- The call is atomic, so nobody can see the state between an operation and the flush.
local FIELDS_PER_CALL = 500

local function cached_hash(key)
  return { key = key, vals = {}, dirty = {} }
end

-- Fetches the fields not cached yet. `false` in vals means "absent".
local function prefetch(h, fields)
  local missing, seen = {}, {}
  for _, f in ipairs(fields) do
    if h.vals[f] == nil and not seen[f] then
      seen[f] = true
      missing[#missing + 1] = f
    end
  end
  for i = 1, #missing, FIELDS_PER_CALL do
    local part = { unpack(missing, i, math.min(i + FIELDS_PER_CALL - 1, #missing)) }
    local got = redis.call('HMGET', h.key, unpack(part))
    for j, f in ipairs(part) do
      h.vals[f] = got[j] or false
    end
  end
end

local function hget(h, f)
  local v = h.vals[f]
  if v == nil then
    v = redis.call('HGET', h.key, f) or false
    h.vals[f] = v
  end
  return v
end

local function hput(h, f, v)
  h.vals[f] = v
  h.dirty[f] = true
end

local function flush_hash(h)
  local sets, dels = {}, {}
  for f in pairs(h.dirty) do
    local v = h.vals[f]
    if v then
      sets[#sets + 1] = f
      sets[#sets + 1] = v
    else
      dels[#dels + 1] = f
    end
  end
  call_chunked('HSET', h.key, sets, 2 * FIELDS_PER_CALL)
  call_chunked('HDEL', h.key, dels, FIELDS_PER_CALL)
  h.dirty = {}
end

-- The prefix of the adjacency keys of generation `gen` (a string of digits; generation 0 is the prefix itself).
local function adjacency_prefix(prefix, gen)
  if not gen or gen == '0' then return prefix end
  return prefix .. ':g' .. gen
end

-- The project's current generation, as a string of digits.
local function current_generation(prefix)
  return redis.call('GET', prefix .. ':generation') or '0'
end

-- The context shared by every event of one call.
local function new_context(prefix, project, maxlen, publish, traceparent)
  if publish ~= 'PUBLISH' and publish ~= 'SPUBLISH' then
    fail('ERR publish command must be PUBLISH or SPUBLISH')
  end
  if not maxlen then fail('ERR maxlen must be a number') end
  local stream = prefix .. ':cdc'
  local stream_type = redis.call('TYPE', stream)['ok']
  if stream_type ~= 'stream' and stream_type ~= 'none' then
    -- Checked before any write: an XADD that fails after the state is written would leave state without event.
    fail('WRONGTYPE ' .. stream .. ' holds a ' .. stream_type .. ', not a stream')
  end
  local trace = ''
  if traceparent ~= '' then
    trace = ',"trace":{"traceparent":' .. jstr(traceparent) .. '}'
  end
  return {
    prefix = prefix,
    adj = adjacency_prefix(prefix, current_generation(prefix)),
    stream = stream,
    held = stream .. ':held',
    channel = prefix .. ':events',
    node_kinds = prefix .. ':node_kinds',
    rel_types = prefix .. ':rel_types',
    nodes = cached_hash(prefix .. ':nodes'),
    rels = cached_hash(prefix .. ':rels'),
    versions = cached_hash(prefix .. ':versions'),
    head = '"project":' .. jstr(project) .. ',"type":"',
    tail = ',"ts":"' .. iso_time() .. '"' .. trace .. '}',
    maxlen = maxlen,
    publish = publish,
    counts = {},
    sets = {},
    parts = {},
    changes = 0,
  }
end

-- Queues a change of the call's change set; `write_change_set` writes them once the state is. Returns its
-- position (1-based) in the set. The pieces go into one table that becomes the entry with one concatenation:
-- a string per change would be allocated, hashed (Lua interns every string) and collected for nothing.
local function emit(ctx, etype, ekind, id, version, data)
  local parts, n = ctx.parts, #ctx.parts
  ctx.changes = ctx.changes + 1
  parts[n + 1] = ctx.changes == 1 and '{"type":"' or ',{"type":"'
  parts[n + 2] = etype
  parts[n + 3] = '","entity":{"kind":"'
  parts[n + 4] = ekind
  parts[n + 5] = '","id":"'
  parts[n + 6] = jescape(id)
  parts[n + 7] = '"},"version":'
  parts[n + 8] = version
  parts[n + 9] = ',"data":'
  parts[n + 10] = data
  parts[n + 11] = '}'
  return ctx.changes
end

-- Set changes (the adjacency sets) are gathered per call as well: the last change of a member wins, and each key
-- is written with one SADD and one SREM at the end. A key about to be read is written first.
local function set_change(ctx, key, member, present)
  table_of(ctx.sets, key)[member] = present
end

local function flush_set(ctx, key)
  local per_key = ctx.sets[key]
  if not per_key then return end
  ctx.sets[key] = nil
  local adds, rems = {}, {}
  for member, present in pairs(per_key) do
    if present then adds[#adds + 1] = member else rems[#rems + 1] = member end
  end
  call_chunked('SADD', key, adds, FIELDS_PER_CALL)
  call_chunked('SREM', key, rems, FIELDS_PER_CALL)
end

local function set_members(ctx, key)
  flush_set(ctx, key)
  return redis.call('SMEMBERS', key)
end

-- The entity's next version, as the string every use of it wants (Lua's number formatting is slow).
local function bump(ctx, field)
  local v = tostring(tonumber(hget(ctx.versions, field) or 0) + 1)
  hput(ctx.versions, field, v)
  return v
end

-- Counter changes are gathered per call and written once per (key, field): a batch of a thousand functions
-- costs one HINCRBY, not a thousand.
local function count(ctx, key, field, delta)
  local per_key = table_of(ctx.counts, key)
  per_key[field] = (per_key[field] or 0) + delta
end

local function flush(ctx)
  for key in pairs(ctx.sets) do
    flush_set(ctx, key)
  end
  flush_hash(ctx.nodes)
  flush_hash(ctx.rels)
  flush_hash(ctx.versions)
  for key, fields in pairs(ctx.counts) do
    for field, delta in pairs(fields) do
      if delta ~= 0 and redis.call('HINCRBY', key, field, delta) <= 0 then
        redis.call('HDEL', key, field)
      end
    end
  end
end

local function delete_relationship(ctx, id)
  local old = hget(ctx.rels, id)
  if not old then return nil end
  local r = cjson.decode(old)
  set_change(ctx, ctx.adj .. ':out:' .. r.source, id, false)
  set_change(ctx, ctx.adj .. ':in:' .. r.target, id, false)
  hput(ctx.rels, id, false)
  count(ctx, ctx.rel_types, r.type, -1)
  local v = bump(ctx, 'r:' .. id)
  return v, emit(ctx, 'relationship_deleted', 'relationship', id, v, old)
end

-- Operations, seven arguments each: op, id, kind|type, source, target, data (canonical JSON), expect.
-- expect: '' (any), 'absent' (must not exist) or a version the entity must have now.
local OP_ARGS = 7

local function check_expect(exists, current, expect, what, id)
  if expect == '' then return end
  if expect == 'absent' then
    if exists then fail('CONFLICT ' .. what .. ' ' .. id .. ' already exists') end
    return
  end
  if not exists then fail('NOTFOUND ' .. what .. ' ' .. id .. ' does not exist') end
  if tostring(current) ~= expect then
    fail('CONFLICT ' .. what .. ' ' .. id .. ' is at version ' .. tostring(current) .. ', not ' .. expect)
  end
end

-- Loads every field the operations will read, a few hundred per HMGET.
local function prefetch_ops(ctx, argv, first, n)
  local node_ids, rel_ids, version_fields = {}, {}, {}
  for i = 0, n - 1 do
    local base = first + i * OP_ARGS
    local op, id = argv[base], argv[base + 1]
    if op == 'un' or op == 'dn' then
      node_ids[#node_ids + 1] = id
      version_fields[#version_fields + 1] = 'n:' .. id
    elseif op == 'ur' or op == 'dr' then
      rel_ids[#rel_ids + 1] = id
      version_fields[#version_fields + 1] = 'r:' .. id
      if op == 'ur' then
        node_ids[#node_ids + 1] = argv[base + 3]
        node_ids[#node_ids + 1] = argv[base + 4]
      end
    end
  end
  prefetch(ctx.nodes, node_ids)
  prefetch(ctx.rels, rel_ids)
  prefetch(ctx.versions, version_fields)
end

-- Checks every operation against the state as the earlier operations of the call leave it; writes nothing.
local function check_ops(ctx, argv, first, n)
  local node_seen, rel_seen = {}, {}
  local function node_exists(id)
    local s = node_seen[id]
    if s == nil then s = hget(ctx.nodes, id) ~= false end
    return s
  end
  local function rel_exists(id)
    local s = rel_seen[id]
    if s == nil then s = hget(ctx.rels, id) ~= false end
    return s
  end
  local function version(field)
    return hget(ctx.versions, field) or 0
  end
  -- Relationships the call's node deletes take with them (a relationship to the node itself counts twice): those
  -- stored, but the ones an earlier operation of the call deletes (`going`: node id → count). Relationships the
  -- call itself adds are not counted; the call's size bounds them.
  local cascade, going = 0, {}
  for i = 0, n - 1 do
    local base = first + i * OP_ARGS
    local op, id, expect = argv[base], argv[base + 1], argv[base + 6]
    if op == 'un' then
      if expect ~= '' then check_expect(node_exists(id), version('n:' .. id), expect, 'node', id) end
      node_seen[id] = true
    elseif op == 'ur' then
      local source, target = argv[base + 3], argv[base + 4]
      if not node_exists(source) then
        fail('DANGLING relationship ' .. id .. ': source node ' .. source .. ' does not exist')
      end
      if not node_exists(target) then
        fail('DANGLING relationship ' .. id .. ': target node ' .. target .. ' does not exist')
      end
      if expect ~= '' then check_expect(rel_exists(id), version('r:' .. id), expect, 'relationship', id) end
      rel_seen[id] = true
    elseif op == 'dn' then
      if expect ~= '' then check_expect(node_exists(id), version('n:' .. id), expect, 'node', id) end
      local has = redis.call('SCARD', ctx.adj .. ':out:' .. id) + redis.call('SCARD', ctx.adj .. ':in:' .. id)
      has = math.max(0, has - (going[id] or 0))
      cascade = cascade + has
      if cascade > MAX_CASCADE then
        fail('CASCADE node ' .. id .. ' has ' .. has .. ' relationships; one call deletes at most ' .. MAX_CASCADE ..
          ' with its nodes: delete them first (cg_detach)')
      end
      node_seen[id] = false
    elseif op == 'dr' then
      if expect ~= '' then check_expect(rel_exists(id), version('r:' .. id), expect, 'relationship', id) end
      local stored = rel_seen[id] ~= false and hget(ctx.rels, id)
      if stored then
        local r = cjson.decode(stored)
        going[r.source] = (going[r.source] or 0) + 1
        going[r.target] = (going[r.target] or 0) + 1
      end
      rel_seen[id] = false
    else
      fail('ERR unknown operation ' .. tostring(op))
    end
  end
end

-- Applies one operation; returns status, version, position of its queued event (0: none), relationships deleted
-- with it.
local function apply_op(ctx, op, id, label, source, target, data)
  local p = ctx.adj
  if op == 'un' then
    local old = hget(ctx.nodes, id)
    if old == data then
      return 'unchanged', hget(ctx.versions, 'n:' .. id) or '0', 0, 0
    end
    local etype, status = 'node_added', 'created'
    if old then
      etype, status = 'node_updated', 'updated'
      local old_kind = cjson.decode(old).kind
      if old_kind ~= label then
        count(ctx, ctx.node_kinds, old_kind, -1)
        count(ctx, ctx.node_kinds, label, 1)
      end
    else
      count(ctx, ctx.node_kinds, label, 1)
    end
    hput(ctx.nodes, id, data)
    local v = bump(ctx, 'n:' .. id)
    return status, v, emit(ctx, etype, 'node', id, v, data), 0
  elseif op == 'ur' then
    local old = hget(ctx.rels, id)
    if old == data then
      return 'unchanged', hget(ctx.versions, 'r:' .. id) or '0', 0, 0
    end
    local etype, status = 'relationship_added', 'created'
    if old then
      etype, status = 'relationship_updated', 'updated'
      local r = cjson.decode(old)
      if r.source ~= source then
        set_change(ctx, p .. ':out:' .. r.source, id, false)
        set_change(ctx, p .. ':out:' .. source, id, true)
      end
      if r.target ~= target then
        set_change(ctx, p .. ':in:' .. r.target, id, false)
        set_change(ctx, p .. ':in:' .. target, id, true)
      end
      if r.type ~= label then
        count(ctx, ctx.rel_types, r.type, -1)
        count(ctx, ctx.rel_types, label, 1)
      end
    else
      set_change(ctx, p .. ':out:' .. source, id, true)
      set_change(ctx, p .. ':in:' .. target, id, true)
      count(ctx, ctx.rel_types, label, 1)
    end
    hput(ctx.rels, id, data)
    local v = bump(ctx, 'r:' .. id)
    return status, v, emit(ctx, etype, 'relationship', id, v, data), 0
  elseif op == 'dn' then
    local old = hget(ctx.nodes, id)
    if not old then
      return 'not_found', hget(ctx.versions, 'n:' .. id) or '0', 0, 0
    end
    local cascaded = 0
    for _, key in ipairs({ p .. ':out:' .. id, p .. ':in:' .. id }) do
      for _, rid in ipairs(set_members(ctx, key)) do
        if delete_relationship(ctx, rid) then cascaded = cascaded + 1 end
      end
      redis.call('DEL', key)
      -- What the loop queued for this key (a relationship from the node to itself) is moot now.
      ctx.sets[key] = nil
    end
    hput(ctx.nodes, id, false)
    count(ctx, ctx.node_kinds, cjson.decode(old).kind, -1)
    local v = bump(ctx, 'n:' .. id)
    return 'deleted', v, emit(ctx, 'node_deleted', 'node', id, v, old), cascaded
  else -- 'dr', the only other operation check_ops lets through
    local v, event = delete_relationship(ctx, id)
    if not v then
      return 'not_found', hget(ctx.versions, 'r:' .. id) or '0', 0, 0
    end
    return 'deleted', v, event, 0
  end
end

-- Stream IDs (`<ms>-<seq>`) are compared as digit strings: Lua numbers are doubles, exact only up to 2^53.
local function split_id(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if not ms then
    ms, seq = string.match(id, '^(%d+)$'), '0'
  end
  if not ms or #ms > 20 or #seq > 20 then return nil end
  return (string.gsub(ms, '^0+(%d)', '%1')), (string.gsub(seq, '^0+(%d)', '%1'))
end

local function digits_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function id_less(a, b)
  local ams, aseq = split_id(a)
  local bms, bseq = split_id(b)
  if ams ~= bms then return digits_less(ams, bms) end
  return digits_less(aseq, bseq)
end

-- The smallest ID above `id`. A sequence too long to add to exactly keeps `id` itself: one entry more is kept.
local function successor(id)
  local ms, seq = split_id(id)
  if #seq > 15 then return id end
  return ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)
end

-- The lowest ID any consumer group of `stream` still needs, and that group's name; nil when it has no group.
-- A group needs its oldest pending entry (delivered, not acknowledged) and everything it has not been delivered
-- (above its last-delivered-id). The stream must exist. Shared by the length cap and `cg_trim`.
local function groups_floor(stream)
  local floor, holder
  for _, flat in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local g = {}
    for i = 1, #flat, 2 do
      g[flat[i]] = flat[i + 1]
    end
    local needs = successor(g['last-delivered-id'])
    if g['pending'] > 0 then
      needs = redis.call('XPENDING', stream, g['name'])[2]
    end
    if not floor or id_less(needs, floor) then
      floor, holder = needs, g['name']
    end
  end
  return floor, holder
end

-- The length cap is enforced once per `cap_slack` added entries, not on every XADD: its checks (XINFO, XPENDING,
-- XRANGE) then cost amortised O(1) per event. At least a stream node (100 entries by default): Redis trims whole
-- nodes. At most 1,000, which bounds the entries one check reads.
local function cap_slack(maxlen)
  return math.min(1000, math.max(100, math.floor(maxlen / 10)))
end

-- Trims the stream back to about `ctx.maxlen` entries after `added` new ones, but never below what a consumer
-- group still needs. A stream a lagging group holds above its cap is recorded in `<stream>:held` (entries above
-- the cap, the cap, the group, its floor, when; see `functions.rs`) and logged; the record goes once the cap can
-- trim again.
local function cap_stream(ctx, added)
  if ctx.maxlen <= 0 or added == 0 then return end
  local excess = redis.call('XLEN', ctx.stream) - ctx.maxlen
  local slack = cap_slack(ctx.maxlen)
  if excess < slack or math.floor(excess / slack) == math.floor(math.max(excess - added, 0) / slack) then
    return
  end
  local floor, group = groups_floor(ctx.stream)
  if not floor then
    redis.call('XTRIM', ctx.stream, 'MAXLEN', '~', ctx.maxlen)
    redis.call('DEL', ctx.held)
    return
  end
  -- The cap removes the `n` oldest entries (at most 2 slacks a check, so a long backlog drains over several
  -- checks), as far as they are below the floor: `XTRIM MINID ~ <floor> LIMIT n` does exactly that, in whole
  -- stream nodes, without reading an entry (a change set can be hundreds of KB).
  local n = math.min(excess, 2 * slack)
  local removed = redis.call('XTRIM', ctx.stream, 'MINID', '~', floor, 'LIMIT', n)
  local above = redis.call('XLEN', ctx.stream) - ctx.maxlen
  -- Whole nodes hold at most `stream-node-max-entries` (100 by default; the cap needs it at most 100) and n is at
  -- least 100 here, so a trim that took less than half of n stopped at the floor: the stream is held. One that
  -- took more may have met the floor too; the next check, left less to take, records it then.
  if removed * 2 >= n or above <= 0 then
    redis.call('DEL', ctx.held)
    return
  end
  local now = redis.call('TIME')
  redis.call('HSET', ctx.held, 'entries', above, 'cap', ctx.maxlen, 'group', group, 'floor', floor,
    'checked_at', now[1] * 1000 + math.floor(now[2] / 1000))
  redis.log(redis.LOG_WARNING, ctx.stream .. ' is ' .. above .. ' entries above its cap of ' .. ctx.maxlen ..
    ': group ' .. group .. ' still needs ' .. floor)
end

-- Joins the strings of `t` into one with as few intermediate strings as possible. Making a string costs Redis's
-- Lua about 1.7 ns per byte (it hashes the whole string to intern it), and `table.concat` makes a string of every
-- 8 KiB buffer and of every merge of them: for a 150 KB change set, five times the bytes. One `..` expression over
-- many operands makes a single string; this joins 100 at a time, so a change set costs two or three.
local CAT = 100

local function cat100(t, i)
  return
    t[i] .. t[i + 1] .. t[i + 2] .. t[i + 3] .. t[i + 4] .. t[i + 5] .. t[i + 6] .. t[i + 7] .. t[i + 8] .. t[i + 9] ..
    t[i + 10] .. t[i + 11] .. t[i + 12] .. t[i + 13] .. t[i + 14] .. t[i + 15] .. t[i + 16] .. t[i + 17] .. t[i + 18] .. t[i + 19] ..
    t[i + 20] .. t[i + 21] .. t[i + 22] .. t[i + 23] .. t[i + 24] .. t[i + 25] .. t[i + 26] .. t[i + 27] .. t[i + 28] .. t[i + 29] ..
    t[i + 30] .. t[i + 31] .. t[i + 32] .. t[i + 33] .. t[i + 34] .. t[i + 35] .. t[i + 36] .. t[i + 37] .. t[i + 38] .. t[i + 39] ..
    t[i + 40] .. t[i + 41] .. t[i + 42] .. t[i + 43] .. t[i + 44] .. t[i + 45] .. t[i + 46] .. t[i + 47] .. t[i + 48] .. t[i + 49] ..
    t[i + 50] .. t[i + 51] .. t[i + 52] .. t[i + 53] .. t[i + 54] .. t[i + 55] .. t[i + 56] .. t[i + 57] .. t[i + 58] .. t[i + 59] ..
    t[i + 60] .. t[i + 61] .. t[i + 62] .. t[i + 63] .. t[i + 64] .. t[i + 65] .. t[i + 66] .. t[i + 67] .. t[i + 68] .. t[i + 69] ..
    t[i + 70] .. t[i + 71] .. t[i + 72] .. t[i + 73] .. t[i + 74] .. t[i + 75] .. t[i + 76] .. t[i + 77] .. t[i + 78] .. t[i + 79] ..
    t[i + 80] .. t[i + 81] .. t[i + 82] .. t[i + 83] .. t[i + 84] .. t[i + 85] .. t[i + 86] .. t[i + 87] .. t[i + 88] .. t[i + 89] ..
    t[i + 90] .. t[i + 91] .. t[i + 92] .. t[i + 93] .. t[i + 94] .. t[i + 95] .. t[i + 96] .. t[i + 97] .. t[i + 98] .. t[i + 99]
end

local function join(t)
  while #t > 1 do
    local n = #t
    for k = n + 1, math.ceil(n / CAT) * CAT do
      t[k] = ''
    end
    local out = {}
    for i = 1, n, CAT do
      out[#out + 1] = cat100(t, i)
    end
    t = out
  end
  return t[1] or ''
end

-- XADDs and publishes one entry, once the state is written; then applies the length cap. `rest` is the envelope
-- after its opening brace: the stream stores it without the id, Pub/Sub carries it with the id (XADD's).
-- Returns the id.
local function write_entry(ctx, rest)
  local eid = redis.call('XADD', ctx.stream, '*', 'e', '{' .. rest)
  redis.call(ctx.publish, ctx.channel, '{"id":"' .. eid .. '",' .. rest)
  cap_stream(ctx, 1)
  return eid
end

-- Writes the queued changes as one change set; nil when the call changed nothing.
local function write_change_set(ctx)
  if ctx.changes == 0 then return nil end
  local parts = ctx.parts
  parts[#parts + 1] = ']'
  parts[#parts + 1] = ctx.tail
  table.insert(parts, 1, ctx.head .. 'change_set","changes":[')
  return write_entry(ctx, join(parts))
end

-- Writes one single event (job events, graph_reset): the envelope of a change, with the call's context.
local function write_single(ctx, etype, ekind, id, version, data)
  return write_entry(ctx, ctx.head .. etype .. '","entity":{"kind":"' .. ekind .. '","id":' .. jstr(id) ..
    '},"version":' .. version .. ',"data":' .. data .. ctx.tail)
end

-- cg_mutate KEYS: prefix; ARGV: project, maxlen, publish command, traceparent, op count, ops…
-- Returns the change set's entry id ('' when nothing changed), then one string per operation:
-- `status:version` when it changed nothing, else `status:version:index:cascaded` (index: 0-based position of
-- its change in the set; cascaded: relationships deleted with a node). One string each keeps the reply small.
local function cg_mutate(keys, argv)
  local n = tonumber(argv[5])
  if not n or #argv ~= 5 + n * OP_ARGS then
    fail('ERR cg_mutate expects 5 arguments and ' .. OP_ARGS .. ' per operation')
  end
  local ctx = new_context(keys[1], argv[1], tonumber(argv[2]), argv[3], argv[4])
  prefetch_ops(ctx, argv, 6, n)
  check_ops(ctx, argv, 6, n)
  -- out[1] is the entry id, filled in once written; one short string per operation after it.
  local out = { '' }
  for i = 0, n - 1 do
    local b = 6 + i * OP_ARGS
    local status, v, event, cascaded = apply_op(ctx, argv[b], argv[b + 1], argv[b + 2], argv[b + 3], argv[b + 4], argv[b + 5])
    if event > 0 then
      out[i + 2] = status .. ':' .. v .. ':' .. (event - 1) .. ':' .. cascaded
    else
      out[i + 2] = status .. ':' .. v
    end
  end
  flush(ctx)
  out[1] = write_change_set(ctx) or ''
  return out
end

-- How many of a project's jobs `<prefix>:recent_jobs` keeps (RECENT_JOBS_KEPT in functions.rs).
local RECENT_JOBS_KEPT = 1000

local JOB_STATUS = {
  analysis_started = 'running',
  analysis_progress = 'running',
  analysis_completed = 'completed',
  analysis_failed = 'failed',
  analysis_cancelled = 'cancelled',
}

-- cg_emit KEYS: prefix; ARGV: project, maxlen, publish command, traceparent, type, entity kind, entity id, data.
-- An event that changes no graph state (analysis progress…). Events about a job also record the job's status
-- and last event in its hash, in the same step. Returns the event id.
local function cg_emit(keys, argv)
  if #argv ~= 8 then fail('ERR cg_emit expects 8 arguments') end
  local ctx = new_context(keys[1], argv[1], tonumber(argv[2]), argv[3], argv[4])
  local etype, ekind, id, data = argv[5], argv[6], argv[7], argv[8]
  local job = ekind == 'job' and keys[1] .. ':job:' .. id
  local v
  if job then
    -- A job's version lives in its own hash, which expires with it (library 10 and older kept it in `versions`
    -- as `j:<id>` for ever; a job that began there continues from that field, which goes).
    local field = 'j:' .. id
    local old = hget(ctx.versions, field)
    v = tostring(tonumber(redis.call('HGET', job, 'version') or old or 0) + 1)
    if old then
      hput(ctx.versions, field, false)
      flush_hash(ctx.versions)
    end
  else
    v = bump(ctx, string.sub(ekind, 1, 1) .. ':' .. id)
    flush_hash(ctx.versions)
  end
  if job then
    local now = iso_time()
    local fields = { 'last_event', data, 'updated_at', now, 'version', v }
    if JOB_STATUS[etype] then
      fields[#fields + 1] = 'status'
      fields[#fields + 1] = JOB_STATUS[etype]
    end
    redis.call('HSET', job, unpack(fields))
    -- Jobs graph-api queued have it already; the worker's own (command line, watch runs) get it here.
    redis.call('HSETNX', job, 'created_at', now)
    -- The project's jobs by when they were first seen, for listing; entries whose hash expired are dropped by
    -- the listing, and the index keeps the newest RECENT_JOBS_KEPT (trimmed once it is 100 over).
    local index = keys[1] .. ':recent_jobs'
    local t = redis.call('TIME')
    if redis.call('ZADD', index, 'NX', t[1] * 1000 + math.floor(t[2] / 1000), id) == 1
      and redis.call('ZCARD', index) > RECENT_JOBS_KEPT + 100 then
      redis.call('ZREMRANGEBYRANK', index, 0, -(RECENT_JOBS_KEPT + 1))
    end
  end
  local eid = write_single(ctx, etype, ekind, id, v, data)
  if job then
    -- Known only once the event is written; the key was written just above, so this cannot fail.
    redis.call('HSET', job, 'last_event_id', eid)
  end
  return eid
end

-- The keys that `cg_reset` moves aside as a whole (RENAME is O(1)); everything else of a generation is its
-- adjacency sets, found through its nodes.
local MOVED_KEYS = { 'nodes', 'rels', 'node_kinds', 'rel_types', 'file_hashes' }

-- cg_reset KEYS: prefix; ARGV: project, maxlen, publish command, traceparent, reason.
-- Removes the whole graph of the project and emits graph_reset, in O(1): the graph's big keys move aside to
-- `<prefix>:old:<generation>:…`, the generation grows (so the adjacency sets of the old one are out of sight), and
-- the old generation is recorded in `<prefix>:sweep` (generation → HSCAN cursor) for `cg_sweep` to remove. Versions
-- are kept, so they keep growing.
local function cg_reset(keys, argv)
  if #argv ~= 5 then fail('ERR cg_reset expects 5 arguments') end
  local p = keys[1]
  local ctx = new_context(p, argv[1], tonumber(argv[2]), argv[3], argv[4])
  local removed = redis.call('HLEN', p .. ':nodes')
  local removed_rels = redis.call('HLEN', p .. ':rels')
  local gen = current_generation(p)
  local old = p .. ':old:' .. gen
  local moved = false
  for _, name in ipairs(MOVED_KEYS) do
    if redis.call('EXISTS', p .. ':' .. name) == 1 then
      redis.call('RENAME', p .. ':' .. name, old .. ':' .. name)
      moved = true
    end
  end
  if moved then
    redis.call('HSET', p .. ':sweep', gen, '0')
  end
  redis.call('SET', p .. ':generation', string.format('%.0f', tonumber(gen) + 1))
  local v = bump(ctx, 'p:' .. argv[1])
  flush_hash(ctx.versions)
  local data = '{"nodes":' .. removed .. ',"relationships":' .. removed_rels .. ',"reason":' .. jstr(argv[5]) .. '}'
  return write_single(ctx, 'graph_reset', 'project', argv[1], v, data)
end

-- `UNLINK` of `keys`, a few hundred per command. UNLINK frees a large value in a background thread.
local function unlink_all(keys)
  for i = 1, #keys, FIELDS_PER_CALL do
    redis.call('UNLINK', unpack(keys, i, math.min(i + FIELDS_PER_CALL - 1, #keys)))
  end
end

-- cg_sweep KEYS: prefix; ARGV: budget, the most node ids of an old generation one call looks at.
-- Removes what `cg_reset` moved aside, a bounded step per call: the adjacency sets of `budget` nodes of the oldest
-- generation recorded in `<prefix>:sweep` (its position kept there), and once they are all gone the moved keys and
-- the record. Never a key of the current generation: an old generation is always below it. Returns how many
-- generations are left to sweep (0: done). Safe to run from several processes at once and to resume after a crash.
local function cg_sweep(keys, argv)
  local budget = tonumber(argv[1])
  if #argv ~= 1 or not budget or budget < 1 then fail('ERR cg_sweep expects 1 argument, a positive count') end
  local p = keys[1]
  local record = p .. ':sweep'
  local pending = redis.call('HGETALL', record)
  if #pending == 0 then return 0 end
  local gen, cursor = pending[1], pending[2]
  for i = 3, #pending, 2 do
    if tonumber(pending[i]) < tonumber(gen) then gen, cursor = pending[i], pending[i + 1] end
  end
  local left = #pending / 2
  if not tonumber(gen) or tonumber(gen) >= tonumber(current_generation(p)) then
    -- Not a generation any reset left behind: the record goes, every key stays.
    redis.call('HDEL', record, gen)
    return left - 1
  end
  local old = p .. ':old:' .. gen
  local adj = adjacency_prefix(p, gen)
  local scan = redis.call('HSCAN', old .. ':nodes', cursor, 'COUNT', budget)
  local doomed = {}
  for i = 1, #scan[2], 2 do
    doomed[#doomed + 1] = adj .. ':out:' .. scan[2][i]
    doomed[#doomed + 1] = adj .. ':in:' .. scan[2][i]
  end
  unlink_all(doomed)
  if scan[1] ~= '0' then
    redis.call('HSET', record, gen, scan[1])
    return left
  end
  local moved = {}
  for _, name in ipairs(MOVED_KEYS) do
    moved[#moved + 1] = old .. ':' .. name
  end
  unlink_all(moved)
  redis.call('HDEL', record, gen)
  return left - 1
end

-- cg_detach KEYS: prefix; ARGV: project, maxlen, publish command, traceparent, node id, `out` or `in`, cursor,
-- most.
-- Deletes at most `most` (and MAX_CASCADE) of the node's relationships in that direction, as one change set:
-- one SSCAN step of its adjacency set from `cursor`. Returns the change set's entry id (`''`: none), the next
-- cursor (`0`: the set has been walked) and how many were deleted. The node stays; every state between two
-- calls is a valid graph. Relationships added meanwhile may be missed by a walk: walk again until the node's
-- delete is no longer refused.
local function cg_detach(keys, argv)
  if #argv ~= 8 then fail('ERR cg_detach expects 8 arguments') end
  local dir, cursor, most = argv[6], argv[7], tonumber(argv[8])
  if (dir ~= 'out' and dir ~= 'in') or not string.match(cursor, '^%d+$') or not most or most < 1 then
    fail('ERR cg_detach expects a direction (out, in), a cursor and a positive count')
  end
  local ctx = new_context(keys[1], argv[1], tonumber(argv[2]), argv[3], argv[4])
  most = math.min(most, MAX_CASCADE)
  local scan = redis.call('SSCAN', ctx.adj .. ':' .. dir .. ':' .. argv[5], cursor, 'COUNT', most)
  -- SSCAN may return a few more (a whole bucket); those stay for the next walk or the node's own delete.
  local ids, fields = { unpack(scan[2], 1, math.min(#scan[2], most)) }, {}
  for i, id in ipairs(ids) do
    fields[i] = 'r:' .. id
  end
  prefetch(ctx.rels, ids)
  prefetch(ctx.versions, fields)
  local deleted = 0
  for _, id in ipairs(ids) do
    if delete_relationship(ctx, id) then deleted = deleted + 1 end
  end
  flush(ctx)
  return { write_change_set(ctx) or '', scan[1], deleted }
end

-- cg_trim KEYS: prefix; ARGV: keep_from, a stream ID: entries below it may go (the retention floor).
-- Trims the project's CDC stream below the lowest entry any consumer group still needs (`groups_floor`) and below
-- keep_from, whichever is lower, in one atomic step: a group created meanwhile cannot be missed. Whole stream
-- nodes only (`MINID ~`), so it may keep a few more. A stream without groups is left alone. Returns how many
-- entries were removed.
local function cg_trim(keys, argv)
  if #argv ~= 1 or not split_id(argv[1]) then fail('ERR cg_trim expects 1 argument, a stream ID') end
  local stream = keys[1] .. ':cdc'
  if redis.call('TYPE', stream)['ok'] ~= 'stream' then return 0 end
  local floor = groups_floor(stream)
  if not floor then return 0 end
  if id_less(argv[1], floor) then floor = argv[1] end
  local removed = redis.call('XTRIM', stream, 'MINID', '~', floor)
  local held = stream .. ':held'
  local cap = redis.call('HGET', held, 'cap')
  if cap and redis.call('XLEN', stream) <= tonumber(cap) then
    redis.call('DEL', held)
  end
  return removed
end

local function cg_version()
  return LIBRARY_VERSION
end

redis.register_function('cg_mutate', cg_mutate)
redis.register_function('cg_emit', cg_emit)
redis.register_function('cg_reset', cg_reset)
redis.register_function('cg_detach', cg_detach)
-- Sweeping only frees memory, so it runs even when Redis is out of it.
redis.register_function { function_name = 'cg_sweep', callback = cg_sweep, flags = { 'allow-oom' } }
-- Trimming only frees memory, so it runs even when Redis is out of it.
redis.register_function { function_name = 'cg_trim', callback = cg_trim, flags = { 'allow-oom' } }
redis.register_function { function_name = 'cg_version', callback = cg_version, flags = { 'no-writes' } }
