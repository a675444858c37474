-- wrk script for the messaging row: POST /publish/orders, counting the
-- answers: 202 (sent), 502 (refused: the subscription's queue is full),
-- anything else. Prints `published <sent> <refused> <other>` at the end.
--   wrk -s publish.lua URL

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  req = wrk.format("POST", "/publish/orders", {}, "order")
  sent, refused, other = 0, 0, 0
end

function request()
  return req
end

function response(status, headers, body)
  if status == 202 then
    sent = sent + 1
  elseif status == 502 then
    refused = refused + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local s, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent")
    r = r + t:get("refused")
    o = o + t:get("other")
  end
  io.write(string.format("published %d %d %d\n", s, r, o))
end
