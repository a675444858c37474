"""json-python: per request, parses a 64 KB JSON document and walks it (the
work of a typical JSON API handler, done by the CPython interpreter)."""

import json

from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok

DOC = json.dumps(
    {
        "items": [
            {
                "id": i,
                "name": f"item-{i}",
                "price": (i * 37) % 1000 / 10,
                "tags": ["a", "b", f"t{i % 7}"],
                "stock": {"warehouse": i % 5, "count": (i * 13) % 101},
            }
            for i in range(400)
        ]
    }
)


def work() -> dict:
    parsed = json.loads(DOC)
    total = 0.0
    tagged = 0
    for item in parsed["items"]:
        total += item["price"] * item["stock"]["count"]
        if "t3" in item["tags"]:
            tagged += 1
    return {"bytes": len(DOC), "items": len(parsed["items"]), "total": round(total), "tagged": tagged}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        body = (json.dumps(work()) + "\n").encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        response.set_status_code(200)
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = outgoing.write()
        stream.blocking_write_and_flush(body)
        stream.__exit__(None, None, None)
        OutgoingBody.finish(outgoing, None)
