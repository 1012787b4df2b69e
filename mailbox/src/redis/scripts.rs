//! The Lua scripts of the Redis store: each operation on a mailbox is one
//! script, so that it sees and changes the mailbox atomically. Every key a
//! script touches is passed in `KEYS` and shares the mailbox's hash tag, so
//! the scripts also run on a cluster.
//!
//! The message stream holds seq `n` at entry id `n-0`; entries only leave it
//! from the front, so it is dense and `first` is its first entry's seq, or
//! `top + 1` when it is empty or gone (expired, trimmed, never written).
//! The meta hash (`e` epoch, `s` top, `r` read, `a:<key>` and `t:<key>`
//! device acks) is created with a new epoch the first time a mailbox is
//! read or written, or when Redis lost it; the messages of a lost epoch are
//! dropped then. An idempotency key holds `<epoch><seq>`, so that the key
//! of a lost epoch is not taken for a duplicate.
//!
//! Numbers come back as Redis integers; arguments and stored fields are
//! strings, and bodies pass through byte-exact (Lua strings are binary).
//!
//! The mute scripts change a user's mute hash and publish the mid on the
//! mute channel in the same atomic step, so a watcher that hears of a change
//! reads the new state. Membership needs no script (`SADD`/`SREM` and
//! `SCARD` in one `MULTI`).

use redis::Script;

/// Functions every script starts with.
const COMMON: &str = r"
local function seq_of(entry_id)
  return tonumber(string.match(entry_id, '^(%d+)'))
end

local function top_of(meta)
  return tonumber(redis.call('HGET', meta, 's') or '0')
end

local function first_of(data, top)
  local head = redis.call('XRANGE', data, '-', '+', 'COUNT', 1)
  if head[1] then
    return seq_of(head[1][1])
  end
  return top + 1
end

-- The mailbox's epoch; a mailbox without meta starts a new history, and
-- messages left from a lost one go.
local function epoch_of(meta, data, new_epoch, meta_ms)
  local epoch = redis.call('HGET', meta, 'e')
  if epoch then
    return epoch
  end
  redis.call('DEL', data)
  redis.call('HSET', meta, 'e', new_epoch, 's', 0)
  redis.call('PEXPIRE', meta, meta_ms)
  return new_epoch
end
";

/// One entry. KEYS: meta, data, idempotency key. ARGV: new epoch, id, op,
/// from, ts, body, max_len, idle ms, meta ms, window ms, max seq.
/// Returns `{0, seq, epoch}` when stored, `{1, seq, epoch}` for a duplicate,
/// `{2, top, epoch}` when the mailbox has no seq left.
const APPEND: &str = r"
local meta, data, idem = KEYS[1], KEYS[2], KEYS[3]
local epoch = redis.call('HGET', meta, 'e')
if epoch then
  local known = redis.call('GET', idem)
  if known and string.sub(known, 1, 8) == epoch then
    return {1, tonumber(string.sub(known, 9)), epoch}
  end
else
  epoch = epoch_of(meta, data, ARGV[1], ARGV[9])
end
local top = top_of(meta)
if top >= tonumber(ARGV[11]) then
  return {2, top, epoch}
end
local seq = top + 1
-- The message first: if it fails, nothing of the entry is stored.
redis.call('XADD', data, 'MAXLEN', '=', ARGV[7], seq .. '-0',
  'i', ARGV[2], 'o', ARGV[3], 'f', ARGV[4], 't', ARGV[5], 'd', ARGV[6])
redis.call('HSET', meta, 's', seq)
redis.call('PEXPIRE', data, ARGV[8])
redis.call('PEXPIRE', meta, ARGV[9])
redis.call('SET', idem, epoch .. seq, 'PX', ARGV[10])
return {0, seq, epoch}
";

/// A page. KEYS: meta, data. ARGV: new epoch, meta ms, direction (`f`
/// forward from the bound, `b` backward from it), bound (first or last seq
/// to look at), limit, max bytes.
/// Returns `{epoch, first, top, seq, id, op, from, ts, body, seq, ...}`:
/// entries until their bodies reach max bytes. The caller makes the exact
/// cut (`PageCut`); this only keeps the reply from carrying much more.
const READ: &str = r"
local meta, data = KEYS[1], KEYS[2]
local epoch = epoch_of(meta, data, ARGV[1], ARGV[2])
local top = top_of(meta)
local out = {epoch, first_of(data, top), top}
if ARGV[5] == '0' then
  return out
end
local rows
if ARGV[3] == 'f' then
  rows = redis.call('XRANGE', data, ARGV[4], '+', 'COUNT', ARGV[5])
else
  rows = redis.call('XREVRANGE', data, ARGV[4], '-', 'COUNT', ARGV[5])
end
local budget = tonumber(ARGV[6])
local bytes = 0
for _, row in ipairs(rows) do
  local fields = {}
  local flat = row[2]
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
  end
  local body = fields.d or ''
  out[#out + 1] = seq_of(row[1])
  out[#out + 1] = fields.i or ''
  out[#out + 1] = fields.o or ''
  out[#out + 1] = fields.f or ''
  out[#out + 1] = fields.t or ''
  out[#out + 1] = body
  bytes = bytes + #body
  if bytes >= budget then
    break
  end
end
return out
";

/// Bounds and positions. KEYS: meta, data. ARGV: new epoch, meta ms.
/// Returns `{epoch, first, top, {meta field, value, ...}}`.
const CURSOR: &str = r"
local meta, data = KEYS[1], KEYS[2]
local epoch = epoch_of(meta, data, ARGV[1], ARGV[2])
local top = top_of(meta)
return {epoch, first_of(data, top), top, redis.call('HGETALL', meta)}
";

/// One device ack. KEYS: meta. ARGV: device key, seq, now ms. A mailbox
/// without meta has nothing to ack. Returns 1 when the ack moved.
const ACK: &str = r"
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 0 then
  return 0
end
local seq = math.min(tonumber(ARGV[2]), top_of(meta))
local field = 'a:' .. ARGV[1]
if seq > tonumber(redis.call('HGET', meta, field) or '0') then
  redis.call('HSET', meta, field, seq, 't:' .. ARGV[1], ARGV[3])
  return 1
end
return 0
";

/// The read position. KEYS: meta. ARGV: seq. Returns 1 when it moved.
const SET_READ: &str = r"
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 0 then
  return 0
end
local seq = math.min(tonumber(ARGV[1]), top_of(meta))
if seq > tonumber(redis.call('HGET', meta, 'r') or '0') then
  redis.call('HSET', meta, 'r', seq)
  return 1
end
return 0
";

/// Removes messages up to a seq. KEYS: meta, data. ARGV: upto. Returns how
/// many went.
const TRIM: &str = r"
local meta, data = KEYS[1], KEYS[2]
if redis.call('EXISTS', meta) == 0 then
  return 0
end
local upto = math.min(tonumber(ARGV[1]), top_of(meta))
return redis.call('XTRIM', data, 'MINID', '=', upto + 1)
";

/// Functions the mute scripts start with.
const MUTE_COMMON: &str = r"
-- Drops the expired mutes of a mute hash and makes the hash expire with its
-- last timed mute, capped at max_ttl from now; no expiry while a mute
-- without end (or a value this version cannot read) is left. An emptied
-- hash is gone already (Redis deletes it).
local function settle(key, now, max_ttl)
  local flat = redis.call('HGETALL', key)
  local last = nil
  local keep = false
  for i = 1, #flat, 2 do
    local until_ms = tonumber(flat[i + 1])
    if until_ms == nil then
      keep = true
    elseif until_ms <= now then
      redis.call('HDEL', key, flat[i])
    elseif last == nil or until_ms > last then
      last = until_ms
    end
  end
  if keep then
    redis.call('PERSIST', key)
  elseif last then
    -- Integral and below 2^53: formatted exactly, never in exponent form.
    redis.call('PEXPIREAT', key, string.format('%.0f', math.min(last, now + max_ttl)))
  end
end
";

/// One mute. KEYS: mute hash. ARGV: now ms, max ttl ms, channel, mid,
/// scope, until (`''` until lifted; else in the future, checked by the
/// caller). Returns 1.
const SET_MUTE: &str = r"
local key = KEYS[1]
redis.call('HSET', key, ARGV[5], ARGV[6])
settle(key, tonumber(ARGV[1]), tonumber(ARGV[2]))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Lifts a mute. KEYS: mute hash. ARGV: now ms, max ttl ms, channel, mid,
/// and the scope (none: every scope). Returns 1.
const CLEAR_MUTE: &str = r"
local key = KEYS[1]
if ARGV[5] then
  redis.call('HDEL', key, ARGV[5])
  settle(key, tonumber(ARGV[1]), tonumber(ARGV[2]))
else
  redis.call('DEL', key)
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// The compiled scripts, by operation.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) append: Script,
    pub(super) read: Script,
    pub(super) cursor: Script,
    pub(super) ack: Script,
    pub(super) set_read: Script,
    pub(super) trim: Script,
    pub(super) set_mute: Script,
    pub(super) clear_mute: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        let script = |body: &str| Script::new(&format!("{COMMON}{body}"));
        Scripts {
            append: script(APPEND),
            read: script(READ),
            cursor: script(CURSOR),
            ack: script(ACK),
            set_read: script(SET_READ),
            trim: script(TRIM),
            set_mute: Script::new(&format!("{MUTE_COMMON}{SET_MUTE}")),
            clear_mute: Script::new(&format!("{MUTE_COMMON}{CLEAR_MUTE}")),
        }
    }

    pub(super) fn all(&self) -> [&Script; 8] {
        [
            &self.append,
            &self.read,
            &self.cursor,
            &self.ack,
            &self.set_read,
            &self.trim,
            &self.set_mute,
            &self.clear_mute,
        ]
    }
}
