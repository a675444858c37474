-- wrk script for the sql row: POST /notes with a unique title each time.
--   wrk -s notes.lua URL -- <run>
-- Titles are t<run>-<thread>-<n>: unique across threads and runs (the table
-- has UNIQUE(title); a repeated title would be a 409).

local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  prefix = "t" .. args[1] .. "-" .. id .. "-"
  n = 0
end

function request()
  n = n + 1
  return wrk.format("POST", "/notes", {}, prefix .. n .. "\nbenchmark note")
end
