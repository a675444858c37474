"""Guest-speed rows of the benchmarks (`bench/run.sh --only speed`).

Each guest runs on its tailored runtime and under `wasmtime serve` with its
default settings (the same 48.0.8 CLI, same component), in one run:

- compute (examples/compute, guard pages as its manifest asks; also with
  explicit checks: a 4 MB sieve and a sort of 300k u32 per request), json-python (componentize-py) and json-js (componentize-js),
  both parsing a 64 KB JSON document and walking it per request:
  latency per request at 1 connection (wrk p50) and req/s at 16, the
  servers of a row side by side, measured in alternating rounds;
- hello-http: req/s and p99 at 16 connections on ours (explicit checks,
  as chosen, and guard pages), `wasmtime serve` and native hyper;
- image size of the JS guest: the image embedded in its runtime vs what
  `wasmtime compile` makes of the component, and the runtime itself;
- cold start (exec to first 200) of hello-python (componentize-py, 18 MB)
  vs hello-http: later starts (the image cache filled by an earlier start),
  and first starts (empty cache); 11 starts each, polled every 0.5 ms.
"""

import os
import subprocess
import tempfile
import time
from pathlib import Path

import run as R

GUESTS = R.TARGET / "guests"


def guest_wasm(name):
    """bench/guests/<name>, built by bench/guests/build.sh."""
    path = GUESTS / f"{name}.wasm"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run bench/guests/build.sh (bench/run.sh does)")
    return path


def build_app(name, wasm, tmp, checks=None):
    """A release runtime for `wasm` with a manifest naming only the app (and
    `[limits] memory-checks` if `checks` is given)."""
    manifest = Path(tmp) / f"{name}.toml"
    limits = f'[limits]\nmemory-checks = "{checks}"\n' if checks else ""
    manifest.write_text(f'[app]\nname = "{name}"\ncomponent = "{wasm}"\n{limits}')
    return R.build(manifest)


def image(name):
    """The precompiled image qwasr-gen embedded in `name`'s runtime."""
    return R.TARGET / "qwasr" / name / "app.cwasm"


def latencies(cmds, path="/"):
    """For each of `cmds`: p50 latency (ms) at 1 connection and req/s + p99
    at 16. The servers run side by side and are measured in alternating
    rounds, so a drift in the machine's speed (seen: 15% within minutes)
    falls on every side of a ratio alike."""
    servers, out = [], []
    try:
        for cmd in cmds:
            servers.append(R.Server(cmd))
            out.append({"one": [], "many": [], "p99": []})
        for s in servers:
            s.first_ok(path)
            R.wrk_run(s.addr, path, seconds=1, connections=1)  # warm up
        for _ in range(3 if R.QUICK else R.RUNS):
            for s, o in zip(servers, out):
                o["one"].append(R.wrk_run(s.addr, path, connections=1)[1])
            for s, o in zip(servers, out):
                r, _, b = R.wrk_run(s.addr, path)
                o["many"].append(r)
                o["p99"].append(b)
    finally:
        for s in servers:
            s.stop()
    return [{"p50_ms_1": R.summary(o["one"]), "rps_16": R.summary(o["many"]),
             "p99_ms_16": R.summary(o["p99"])} for o in out]


def speed_section():
    r = {"measured": time.strftime("%Y-%m-%d %H:%M"), "figures": {}, "ratios": {}}
    fig, ratio = r["figures"], r["ratios"]
    serve = [R.WASMTIME, "serve", "-C", "cache=n", "--addr", "{addr}"]
    guests = {
        "compute": (R.ROOT / "examples/compute/app.wasm", []),
        "json-python": (guest_wasm("json-python"), ["-Scli"]),
        "json-js": (guest_wasm("json-js"), ["-Scli"]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        # Every runtime keeps its image copy here, not in ~/.cache.
        cache = Path(tmp) / "image-cache"
        os.environ["QWASR_CACHE_DIR"] = str(cache)
        R.log("speed: building runtimes (release)")
        # Each as qwasr-gen chooses, except compute: its example manifest asks
        # for guard pages; the other choice is measured beside each.
        runtimes = {name: build_app(name, wasm, tmp) for name, (wasm, _) in guests.items()
                    if name != "compute"}
        runtimes["compute"] = R.build(R.ROOT / "examples/compute/qwasr.toml")
        compute_explicit = build_app("compute-explicit", guests["compute"][0], tmp, "explicit")
        hello_wasm = R.ROOT / "examples/hello-http/app.wasm"
        hello = build_app("hello-http", hello_wasm, tmp)
        hello_guard = build_app("hello-guard-pages", hello_wasm, tmp, "guard-pages")

        for name, (wasm, flags) in guests.items():
            R.log(f"speed: {name}")
            # compute is also measured with explicit checks, in the same rounds.
            extra = [[compute_explicit]] if name == "compute" else []
            fig[f"{name}_tailored"], fig[f"{name}_serve"], *rest = latencies(
                [[runtimes[name]], serve + flags + [wasm], *extra])
            if rest:
                fig["compute_explicit"] = rest[0]
            ratio[f"{name}_latency_vs_serve"] = (fig[f"{name}_tailored"]["p50_ms_1"]["median"]
                                                 / fig[f"{name}_serve"]["p50_ms_1"]["median"])
            ratio[f"{name}_rps_vs_serve"] = (fig[f"{name}_tailored"]["rps_16"]["median"]
                                             / fig[f"{name}_serve"]["rps_16"]["median"])

        ratio["compute_explicit_vs_guard"] = (fig["compute_explicit"]["p50_ms_1"]["median"]
                                              / fig["compute_tailored"]["p50_ms_1"]["median"])

        R.log("speed: hello-http throughput")
        fig["hello_tailored"] = R.wrk([hello])
        fig["hello_guard"] = R.wrk([hello_guard])
        ratio["hello_explicit_vs_guard"] = (fig["hello_tailored"]["rps"]["median"]
                                            / fig["hello_guard"]["rps"]["median"])
        fig["hello_serve"] = R.wrk(serve + [R.ROOT / "examples/hello-http/app.wasm"])
        fig["hello_native"] = R.wrk([R.NATIVE, "{addr}"])
        t = fig["hello_tailored"]
        ratio["hello_rps_vs_native"] = t["rps"]["median"] / fig["hello_native"]["rps"]["median"]
        ratio["hello_p99_vs_native"] = t["p99_ms"]["median"] / fig["hello_native"]["p99_ms"]["median"]
        ratio["hello_rps_vs_serve"] = t["rps"]["median"] / fig["hello_serve"]["rps"]["median"]

        R.log("speed: image sizes")
        compiled = Path(tmp) / "json-js.cwasm"
        subprocess.run([R.WASMTIME, "compile", "-C", "cache=n", guests["json-js"][0], "-o", compiled],
                       check=True)
        fig["js_component"] = guests["json-js"][0].stat().st_size
        fig["js_image"] = image("json-js").stat().st_size
        fig["js_wasmtime_compile"] = compiled.stat().st_size
        fig["js_runtime"] = R.stripped_size(runtimes["json-js"])
        ratio["js_image_vs_compile"] = fig["js_image"] / fig["js_wasmtime_compile"]

        R.log("speed: cold start")
        hello_python = build_app("hello-python", guest_wasm("hello-python"), tmp)
        # Later starts find the image copy the first one left in the cache;
        # a first start (empty cache) copies CPython's heap into memory.
        for name, app in (("hello-python", hello_python), ("hello-http", hello)):
            fill_cache(name, app, cache)
        fig["cold_python"] = R.cold_start([hello_python])
        fig["cold_hello"] = R.cold_start([hello])
        ratio["cold_python_vs_hello"] = fig["cold_python"]["median"] / fig["cold_hello"]["median"]
        empty = lambda: {"QWASR_CACHE_DIR": tempfile.mkdtemp(dir=tmp)}
        fig["cold_python_first"] = R.cold_start([hello_python], empty)
        fig["cold_hello_first"] = R.cold_start([hello], empty)
        ratio["cold_python_vs_hello_first"] = (fig["cold_python_first"]["median"]
                                               / fig["cold_hello_first"]["median"])
    return r


def fill_cache(name, runtime, cache):
    """Starts app `name`'s `runtime` once and waits for the copy of its image
    in `cache` (there already if an earlier run of it wrote one), named by the
    digest qwasr-gen wrote beside the image."""
    digest = image(name).with_name("app.cwasm.id").read_text().strip()
    copy = cache / f"{name}-{digest}.cwasm"
    s = R.Server([runtime], {"QWASR_CACHE_DIR": str(cache)})
    try:
        s.first_ok()
        deadline = time.monotonic() + 60
        while not copy.is_file():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{runtime} cached no image in {cache}")
            time.sleep(0.05)
    finally:
        s.stop()


def render(r):
    f, x = r["figures"], r["ratios"]
    span = R.span
    ms = lambda v: f"{v:.2f} ms"
    num = lambda v: f"{v:,.0f}"
    mb = lambda b: f"{b / 1e6:.1f} MB"
    sec = lambda v: f"{v * 1000:.0f} ms"
    rows = []
    for name in ("compute", "json-python", "json-js"):
        t, s = f[f"{name}_tailored"], f[f"{name}_serve"]
        rows += [
            (f"{name}: latency, 1 conn, tailored", span(t["p50_ms_1"], ms), ""),
            ("  wasmtime serve (defaults)", span(s["p50_ms_1"], ms),
             f"tailored = {x[f'{name}_latency_vs_serve']:.2f}× (target ≤ 1.1×)"),
            (f"  req/s, {R.WRK_CONNECTIONS} conns, tailored", span(t["rps_16"], num), ""),
            ("  wasmtime serve (defaults)", span(s["rps_16"], num), f"tailored = {x[f'{name}_rps_vs_serve']:.2f}×"),
        ]
    rows.insert(4, ("  compute with explicit checks (auto's choice)", span(f["compute_explicit"]["p50_ms_1"], ms),
                    f"= {x['compute_explicit_vs_guard']:.2f}× guard pages"))
    h = f
    rows += [
        (f"hello-http req/s, {R.WRK_CONNECTIONS} conns: tailored", span(h["hello_tailored"]["rps"], num),
         f"p99 {h['hello_tailored']['p99_ms']['median']:.2f} ms"),
        ("  hello-http with guard pages", span(h["hello_guard"]["rps"], num),
         f"explicit checks (auto's choice) = {x['hello_explicit_vs_guard']:.2f}× guard pages"),
        ("  wasmtime serve (defaults)", span(h["hello_serve"]["rps"], num),
         f"tailored = {x['hello_rps_vs_serve']:.2f}× (keep ≥ 3×)"),
        ("  native hyper", span(h["hello_native"]["rps"], num),
         f"tailored = {x['hello_rps_vs_native']:.2f}× (target ≥ 0.5×); "
         f"p99 {h['hello_native']['p99_ms']['median']:.2f} ms, tailored = {x['hello_p99_vs_native']:.2f}× (≤ 1.5×)"),
        ("json-js size: component", mb(f["js_component"]), ""),
        ("  image embedded in the runtime", mb(f["js_image"]),
         f"= {x['js_image_vs_compile']:.2f}× `wasmtime compile` (target ≤ 1.1×)"),
        ("  `wasmtime compile`", mb(f["js_wasmtime_compile"]), ""),
        ("  runtime, stripped", mb(f["js_runtime"]), ""),
        ("cold start: hello-python (18 MB guest)", span(f["cold_python"], sec), ""),
        ("  hello-http", span(f["cold_hello"], sec), f"python = {x['cold_python_vs_hello']:.2f}× (target ≤ 2×)"),
    ]
    if "cold_python_first" in f:
        rows += [
            ("  first start (empty image cache): hello-python", span(f["cold_python_first"], sec), ""),
            ("    hello-http", span(f["cold_hello_first"], sec), f"python = {x['cold_python_vs_hello_first']:.2f}×"),
    ]
    return R.table(rows, f"Guest speed ({r['measured']}):")
