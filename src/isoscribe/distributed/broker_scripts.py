"""Lua scripts the client's waiter runs in the broker's Redis, on kombu's own keys (its queue lists and its
``unacked`` hash of delivered, unacknowledged messages)."""

from __future__ import annotations

__all__ = ["FIND_MESSAGES", "DROP_UNACKED"]


FIND_MESSAGES = """
local wanted, found = {}, {}
for i = 1, #ARGV do wanted[ARGV[i]] = true end
local function note(raw, delivered)
  local ok, message = pcall(cjson.decode, raw)
  if not ok or type(message) ~= 'table' then return end
  if delivered then message = message[1] end
  if type(message) ~= 'table' or type(message['headers']) ~= 'table' then return end
  local id = message['headers']['id']
  if id and wanted[id] then
    wanted[id] = nil
    found[#found + 1] = id
  end
end
for k = 1, #KEYS - 1 do
  for _, raw in ipairs(redis.call('LRANGE', KEYS[k], 0, -1)) do note(raw, false) end
end
for _, raw in ipairs(redis.call('HVALS', KEYS[#KEYS])) do note(raw, true) end
return found
"""
"""The task ids of ARGV that have a message in the queue lists KEYS[1..n-1] or in kombu's ``unacked`` hash KEYS[n]."""


DROP_UNACKED = """
local dropped = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, entry = pcall(cjson.decode, entries[i + 1])
  if ok and type(entry) == 'table' and type(entry[1]) == 'table' and type(entry[1]['headers']) == 'table'
     and entry[1]['headers']['id'] == ARGV[1] then
    redis.call('HDEL', KEYS[1], entries[i])
    redis.call('ZREM', KEYS[2], entries[i])
    dropped = dropped + 1
  end
end
return dropped
"""
"""Remove a task's unacknowledged copies from kombu's Redis ``unacked`` hash and its index."""
