-- wrk script for the blobstore row: PUT /bench/o<run>-<thread>-<n> with a
-- body of <size> bytes, then GET the same object, then the next n.
--   wrk -t16 -c16 -s blob.lua URL -- <size> <run>
-- Run with as many threads as connections: a thread's requests then share
-- one connection, one at a time, so each GET follows the PUT it reads.
-- wrk calls the first thread's request() once before connecting, to check
-- the request parses; that call must not advance the PUT/GET alternation.

local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  body = string.rep("x", tonumber(args[1]))
  prefix = "/bench/o" .. args[2] .. "-" .. id .. "-"
  n = 0
  put = true
  checked = id ~= 0
end

function request()
  local path = prefix .. n
  if put then
    put = not checked
    checked = true
    return wrk.format("PUT", path, {}, body)
  end
  put = true
  n = n + 1
  return wrk.format("GET", path, {})
end
