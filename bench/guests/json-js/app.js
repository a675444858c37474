// json-js: per request, parses a 64 KB JSON document and walks it: the work
// of a typical JSON API handler, done by the JavaScript interpreter.
const items = [];
for (let i = 0; i < 400; i++) {
  items.push({ id: i, name: `item-${i}`, price: (i * 37) % 1000 / 10, tags: ["a", "b", `t${i % 7}`], stock: { warehouse: i % 5, count: (i * 13) % 101 } });
}
const doc = JSON.stringify({ items });

function work() {
  const parsed = JSON.parse(doc);
  let total = 0, tagged = 0;
  for (const item of parsed.items) {
    total += item.price * item.stock.count;
    if (item.tags.includes("t3")) tagged++;
  }
  return { bytes: doc.length, items: parsed.items.length, total: Math.round(total), tagged };
}

addEventListener("fetch", (event) =>
  event.respondWith(new Response(JSON.stringify(work()) + "\n", { headers: { "content-type": "application/json" } })),
);
