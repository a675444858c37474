#!/usr/bin/env python3
"""qwasr-gen benchmarks: figures measured side by side in one run.

Every comparison is a ratio of two figures measured here, now, on this
machine; each figure is the median of several runs, with min and max.
Prints a table and writes it to bench/results.json (and results.md).

    bench/run.sh [--quick]
    bench/run.sh --only data [--quick]
    bench/run.sh --only services [--quick]

Two sections: `core` (sizes, cold start, throughput, the generator) and
`data` (the embedded data backends against native baselines). A full run
measures both and writes every row to results.json and results.md. With
`--only data`, only the data section runs: its table goes to
results-data.md, and its figures replace the `data` entry of results.json,
keeping the other figures there (each section records when it was measured).

Needs: cargo, wrk (apt), the wasmtime CLI of the same version as ours
(installed by bench/run.sh into ~/.cache/qwasr-bench, ~18 min the first
time; not for `--only data`), componentize-py (pip; for the large
component), native-data (bench/native-data, for the data section).
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 5
WRK_SECONDS = 3 if QUICK else 8
WRK_CONNECTIONS = 16
TARGET = Path(os.environ.get("QWASR_BENCH_TARGET_DIR", ROOT / "target" / "bench"))
WASMTIME = Path(os.environ.get("QWASR_BENCH_WASMTIME", "wasmtime"))
QWASR_GEN = Path(os.environ["QWASR_BENCH_QWASR_GEN"])
NATIVE = Path(os.environ.get("QWASR_BENCH_NATIVE", "native-hello"))
NATIVE_DATA = Path(os.environ.get("QWASR_BENCH_NATIVE_DATA", "native-data"))
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv[:-1] else None
# Every build shares one target dir and one profile, as a user's CI would.
# Symbols are kept for the size profile; sizes are measured on stripped
# copies. (A different profile setting would rebuild every dependency.)
BUILD_ENV = {"QWASR_TARGET_DIR": str(TARGET), "CARGO_PROFILE_RELEASE_STRIP": "false"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values),
            "values": list(values)}


def build(manifest, *extra, env=None):
    """qwasr-gen build --release; returns the binary's path."""
    out = subprocess.run(
        [QWASR_GEN, "build", "--release", "--manifest", manifest, *extra],
        cwd=ROOT,
        env={**os.environ, **BUILD_ENV, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, text=True,
    )
    return Path(out.stdout.strip())


def crate_sizes(binary, top=12):
    """Bytes of code and data per crate, from the symbol table: where a
    binary's size goes (the size profile behind the size ratios)."""
    out = subprocess.run(["nm", "--size-sort", "-C", "-S", binary],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, text=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        crate = crate_of(parts[3])
        sizes[crate] = sizes.get(crate, 0) + int(parts[1], 16)
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])
    rest = sum(v for _, v in ranked[top:])
    return dict(ranked[:top] + ([("(other)", rest)] if rest else []))


def crate_of(symbol):
    """`<wasmtime::X as core::Y>::z` and `wasmtime::X::z` -> `wasmtime`; C symbols -> (C/std)."""
    m = re.match(r"[<&*\s]*(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)::", symbol)
    return m.group(1) if m else "(C, std, no crate)"


def stripped_size(binary):
    with tempfile.NamedTemporaryFile(delete=False) as t:
        path = t.name
    subprocess.run(["strip", "-o", path, binary], check=True)
    size = os.path.getsize(path)
    os.unlink(path)
    return size


class Server:
    """A server process on a free port; `cmd` gets the address via {addr} or HTTP_ADDR."""

    def __init__(self, cmd, env=None):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        cmd = [str(c).replace("{addr}", self.addr) for c in cmd]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, "HTTP_ADDR": self.addr, "RUST_LOG": "warn", **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def first_ok(self, path="/", timeout=300):
        """Seconds from exec to the first 200 answer."""
        deadline = time.perf_counter() + timeout
        url = f"http://{self.addr}{path}"
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.002)
        raise RuntimeError("server never answered")

    def first_answer(self, path="/", timeout=60):
        """Seconds from exec to the first 200, polled every 0.5 ms with a bare
        socket: `first_ok`'s 2 ms sleeps and urllib's own cost are a large
        part of a small guest's start."""
        request = f"GET {path} HTTP/1.1\r\nHost: {self.addr}\r\nConnection: close\r\n\r\n".encode()
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as c:
                    c.sendall(request)
                    head = b""
                    while len(head) < 12 and (chunk := c.recv(64)):
                        head += chunk
                    elapsed = time.perf_counter() - self.started
            except (ConnectionRefusedError, ConnectionResetError):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}")
                time.sleep(0.0005)
                continue
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the first answer was {head!r}, not 200")
            return elapsed
        raise RuntimeError("server never answered")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# A start takes a few milliseconds, and one scheduling hiccup moves it by as
# much: more starts than other figures get, even with --quick.
COLD_STARTS = 11


def cold_start(cmd, env=None):
    """Exec to first 200, COLD_STARTS times; `env` is a dict, or a function
    making one per start."""
    times = []
    for _ in range(COLD_STARTS):
        s = Server(cmd, env() if callable(env) else env)
        try:
            times.append(s.first_answer())
        finally:
            s.stop()
    return summary(times)


def wrk_run(addr, path="/", seconds=WRK_SECONDS, script=None, args=(), threads=2, check=True,
            connections=WRK_CONNECTIONS):
    """One wrk run at fixed concurrency: (req/s, p50 ms, p99 ms); errors
    (non-2xx answers, socket errors) raise unless `check` is false.
    `script` is a Lua file under bench/wrk, given `args`."""
    rps, p50, p99, _ = wrk_output(addr, path, seconds, script, args, threads, check, connections)
    return rps, p50, p99


def wrk_output(addr, path="/", seconds=WRK_SECONDS, script=None, args=(), threads=2, check=True,
               connections=WRK_CONNECTIONS):
    """wrk_run, also returning wrk's whole output (a script's lines are in it)."""
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        # Slow durable writes must not count as errors: 10 s, not wrk's 2 s.
        cmd += ["--timeout", "10s", "-s", str(ROOT / "bench/wrk" / script)]
    cmd.append(f"http://{addr}{path}")
    if args:
        cmd += ["--", *map(str, args)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True).stdout
    errors = [l for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    if errors and check:
        raise RuntimeError(f"wrk saw errors: {errors}")
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(parts[1])
        elif parts[:1] in (["50%"], ["99%"]):
            figures[parts[0]] = ms(parts[1])
    return figures["rps"], figures["50%"], figures["99%"], out


def wrk(cmd, path="/"):
    """Requests/s and p50/p99 latency (ms) under wrk at fixed concurrency."""
    rps, p50, p99 = [], [], []
    s = Server(cmd)
    try:
        s.first_ok(path)
        wrk_run(s.addr, path, seconds=1)  # warm up: pooled slots, caches, lazy paths
        for _ in range(3 if QUICK else RUNS):
            r, a, b = wrk_run(s.addr, path)
            rps.append(r)
            p50.append(a)
            p99.append(b)
    finally:
        s.stop()
    return {"rps": summary(rps), "p50_ms": summary(p50), "p99_ms": summary(p99)}


def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def timed(cmd, env=None, runs=RUNS):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return summary(times)


def main():
    if ONLY not in (None, "data", "p3", "services", "speed"):
        sys.exit(f"--only takes `data`, `p3`, `services` or `speed`, not {ONLY!r}")
    if ONLY:
        # Only one section's rows: merged into results.json beside the other
        # figures (each section records when it was measured).
        import services
        import speed
        section, render_section = {
            "data": (data_section, render_data),
            "p3": (p3_section, render_p3),
            "services": (services.services_section, services.render),
            "speed": (speed.speed_section, speed.render),
        }[ONLY]
        path = ROOT / "bench/results.json"
        results = json.loads(path.read_text()) if path.exists() else {"machine": {"cores": os.cpu_count()}}
        results[ONLY] = section()
        path.write_text(json.dumps(results, indent=2) + "\n")
        table = render_section(results[ONLY])
        (ROOT / f"bench/results-{ONLY}.md").write_text(table)
        print(table)
        return
    results = {"machine": {"cores": os.cpu_count()}, "wasmtime": str(WASMTIME), "figures": {}, "ratios": {}}
    core_section(results)
    results["data"] = data_section()
    results["p3"] = p3_section()
    import services
    import speed
    results["services"] = services.services_section()
    results["speed"] = speed.speed_section()
    (ROOT / "bench/results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = (render(results) + "\n" + render_data(results["data"]) + "\n" + render_p3(results["p3"])
             + "\n" + services.render(results["services"]) + "\n" + speed.render(results["speed"]))
    (ROOT / "bench/results.md").write_text(table)
    (ROOT / "bench/results-data.md").write_text(render_data(results["data"]))
    (ROOT / "bench/results-p3.md").write_text(render_p3(results["p3"]))
    (ROOT / "bench/results-services.md").write_text(services.render(results["services"]))
    (ROOT / "bench/results-speed.md").write_text(speed.render(results["speed"]))
    print(table)


def span(s, fmt):
    """A summary as `median (min–max)`, each formatted by `fmt`."""
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def table(rows, title=None):
    """A markdown table of (measure, median (min–max), ratio) rows, under `title`."""
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    lines = [title, ""] if title else []
    lines += [f"| {'measure'.ljust(w)} | {'median (min–max)'.ljust(v)} | ratio |", f"|{'-' * (w + 2)}|{'-' * (v + 2)}|---|"]
    lines += [f"| {a.ljust(w)} | {b.ljust(v)} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def p3_section():
    """WASI 0.3 rows (bench/p3.py)."""
    import p3

    r = {"measured": time.strftime("%Y-%m-%d %H:%M"), "figures": {}, "ratios": {}}
    p3.measure(r)
    return r


def render_p3(r):
    """The WASI 0.3 section's table."""
    import p3

    return table(p3.rows(r), f"WASI 0.3 ({r['measured']}):")


def core_section(results):
    """Sizes, cold start, throughput against wasmtime and native hyper, the generator."""
    results["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
    fig, ratio = results["figures"], results["ratios"]
    hello_wasm = ROOT / "examples/hello-http/app.wasm"
    python_wasm = ROOT / "examples/hello-python/app.wasm"
    serve = [WASMTIME, "serve", "-C", "cache=n", "--addr", "{addr}"]

    log("building runtimes (release)")
    hello = build("examples/hello-http/qwasr.toml")
    python = build("examples/hello-python/qwasr.toml")
    # The same component on a runtime linking every interface and default
    # backend in the catalog: what a general-purpose runtime carries.
    everything_dir = Path(tempfile.mkdtemp())
    (everything_dir / "qwasr.toml").write_text(f'[app]\nname = "all-backends"\ncomponent = "{hello_wasm}"\n')
    everything = build(str(everything_dir / "qwasr.toml"), "--link-all")
    shutil.rmtree(everything_dir)

    log("binary sizes")
    fig["size_tailored_hello"] = stripped_size(hello)
    fig["size_all_backends"] = stripped_size(everything)
    fig["size_wasmtime_cli"] = stripped_size(WASMTIME)
    ratio["size_tailored_vs_wasmtime_cli"] = fig["size_tailored_hello"] / fig["size_wasmtime_cli"]
    ratio["size_tailored_vs_all_backends"] = fig["size_tailored_hello"] / fig["size_all_backends"]
    results["size_profile"] = {"tailored_hello": crate_sizes(hello), "all_backends": crate_sizes(everything)}

    log("cold start: exec to first 200")
    fig["cold_tailored_hello"] = cold_start([hello])
    fig["cold_wasmtime_serve_hello"] = cold_start(serve + [hello_wasm])
    fig["cold_tailored_python"] = cold_start([python])
    fig["cold_wasmtime_serve_python"] = cold_start(serve + ["-Scli", python_wasm])
    ratio["cold_tailored_vs_serve_hello"] = fig["cold_tailored_hello"]["median"] / fig["cold_wasmtime_serve_hello"]["median"]
    ratio["cold_serve_vs_tailored_python"] = fig["cold_wasmtime_serve_python"]["median"] / fig["cold_tailored_python"]["median"]

    log("throughput")
    fig["load_tailored_hello"] = wrk([hello])
    fig["load_wasmtime_serve_pooling_hello"] = wrk(serve + ["-O", "pooling-allocator", hello_wasm])
    fig["load_native_hyper"] = wrk([NATIVE])
    t = fig["load_tailored_hello"]["rps"]["median"]
    ratio["rps_tailored_vs_serve_pooling"] = t / fig["load_wasmtime_serve_pooling_hello"]["rps"]["median"]
    ratio["rps_tailored_vs_native_hyper"] = t / fig["load_native_hyper"]["rps"]["median"]

    log("generator")
    with tempfile.TemporaryDirectory() as d:
        fig["generate_hello_s"] = timed(
            [QWASR_GEN, "generate", "--manifest", "examples/hello-http/qwasr.toml", "--out", str(Path(d) / "hello")], runs=10)
        # A second app with a warm target directory: a fresh name, so its own crate compiles.
        manifest = Path(d) / "qwasr.toml"
        manifest.write_text(f'[app]\nname = "second-{os.getpid()}"\ncomponent = "{hello_wasm}"\n')
        fig["build_second_app_release_s"] = timed(
            [QWASR_GEN, "build", "--release", "--manifest", str(manifest)], env=BUILD_ENV, runs=1)


# --- data: the embedded data backends against native baselines -------------

BLOB_SIZES = {"1kib": 1024, "1mib": 1024 * 1024}


def variant(example, name, backends, dir):
    """A manifest in `dir` for `example`'s component under another name, with
    `backends` overriding its [backends]; every other table copied."""
    src = ROOT / "examples" / example / "qwasr.toml"
    m = tomllib.loads(src.read_text())
    m["app"] = {**m.get("app", {}), "name": name, "component": str(src.parent / m.get("app", {}).get("component", "app.wasm"))}
    m["backends"] = {**m.get("backends", {}), **backends}
    path = Path(dir) / f"{name}.toml"
    path.write_text("".join(f"[{table}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in keys.items())
                            + "\n" for table, keys in m.items()))
    return str(path)


def toml_value(v):
    """A TOML value of what tomllib read (strings, numbers, booleans, arrays, tables)."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return json.dumps(v)


def data_dir():
    """A fresh QWASR_DATA_DIR, on the filesystem of the native baselines' dirs."""
    return tempfile.mkdtemp(prefix="qwasr-bench-data-")


def http(addr, method, path, body=None):
    """(status, text) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def native_data(*args):
    """One run of bench/native-data: its JSON figures."""
    out = subprocess.run([NATIVE_DATA, *map(str, args)], stdout=subprocess.PIPE, check=True, text=True).stdout
    return json.loads(out)


class OthersCpu:
    """CPU time other processes used while this one measured: all busy
    time on the machine (/proc/stat) minus this process's and its reaped
    children's (servers, wrk, native-data). Other work on the same 2 cores
    (another build) skews figures; this says how much there was. Approximate:
    kernel work not charged to any process counts as others'."""

    def __init__(self):
        self.start = (self.busy(), self.own(), time.perf_counter())

    @staticmethod
    def busy():
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq = map(int, f.readline().split()[1:8])
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def share(self):
        """Others' CPU seconds as a fraction of the machine's CPU seconds since start."""
        busy, own, wall = self.start
        others = (self.busy() - busy) - (self.own() - own)
        return max(others, 0.0) / ((time.perf_counter() - wall) * os.cpu_count())


def alternating(a, b):
    """RUNS runs of a(i) and of b(i), taking turns: fsync-bound figures drift
    with the disk (several-fold within minutes on a VM), so the two sides of
    a ratio are measured in the same stretches of time."""
    ra, rb = [], []
    for i in range(RUNS):
        ra.append(a(i))
        rb.append(b(i))
    return ra, rb


def loads(runs):
    """The req/s and latency summaries of wrk_run results."""
    return {"rps": summary([r[0] for r in runs]), "p50_ms": summary([r[1] for r in runs]),
            "p99_ms": summary([r[2] for r in runs])}


def clear_objects(root):
    """Removes the objects (files named o*) under `root`, keeping directories
    and the blobstore's container files: each blobstore run starts with empty
    object directories, guest and native alike, and 1 MiB runs do not pile
    up tens of GB. The guest's server is idle meanwhile; it keeps no state
    about object files."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.startswith("o"):
                os.unlink(os.path.join(dirpath, name))


def wait_up(server, timeout=60):
    """Waits until the server answers anything over HTTP."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}")
        try:
            http(server.addr, "GET", "/")
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server never answered")


def received(addr):
    """Messages the messaging example has handled on `orders`."""
    status, text = http(addr, "GET", "/received/orders")
    if status == 404:
        return 0
    if status != 200:
        raise RuntimeError(f"GET /received/orders: {status} {text}")
    return int(text.split()[0])


def drained(addr, quiet=1.0):
    """Polls the handled count until it stops rising for `quiet` seconds;
    returns (count, when it first showed that count)."""
    count, seen = received(addr), time.perf_counter()
    while time.perf_counter() - seen < quiet:
        time.sleep(0.01)
        now = received(addr)
        if now != count:
            count, seen = now, time.perf_counter()
    return count, seen


def publish_run(addr, seconds):
    """wrk publishing to `orders` for `seconds`, then waiting until the
    handler has caught up: (messages/s, handled, sent, refused). `sent`
    counts the 202s wrk saw; up to one request per connection is still in
    flight when wrk stops, so `handled` may exceed it by that much."""
    base, _ = drained(addr)
    t0 = time.perf_counter()
    _, _, _, out = wrk_output(addr, seconds=seconds, script="publish.lua", check=False)
    sent, refused, other = map(int, re.search(r"^published (\d+) (\d+) (\d+)$", out, re.M).groups())
    if other:
        raise RuntimeError(f"publish answered {other} times with neither 202 nor 502")
    count, last = drained(addr)
    handled = count - base
    return handled / (last - t0), handled, sent, refused


def data_section():
    """keyvalue on disk vs in memory; blobstore and sql guests vs the same
    file/SQLite operations natively; messages through the in-process broker."""
    d = {"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": RUNS, "seconds": WRK_SECONDS,
         "connections": WRK_CONNECTIONS, "figures": {}, "ratios": {}}
    f, x = d["figures"], d["ratios"]
    conns, pid = WRK_CONNECTIONS, os.getpid()
    dirs, servers = [], []  # removed and stopped at the end, or as soon as done with

    def fresh():
        dirs.append(data_dir())
        return dirs[-1]

    def serve(cmd):
        """A runtime on a fresh data dir (`.data`), answering."""
        data = fresh()
        servers.append(Server(cmd, {"QWASR_DATA_DIR": data}))
        servers[-1].data = data
        wait_up(servers[-1])
        return servers[-1]

    def done():
        while servers:
            servers.pop().stop()
        while dirs:
            shutil.rmtree(dirs.pop(), ignore_errors=True)

    manifests = tempfile.mkdtemp()
    try:
        log("building data runtimes (release)")
        counter = build("examples/counter/qwasr.toml")
        counter_memory = build(variant("counter", "counter-memory", {"keyvalue": "memory"}, manifests))
        blobstore = build("examples/blobstore/qwasr.toml")
        notes = build("examples/notes/qwasr.toml")
        messaging = build(variant("messaging", "messaging-memory", {"keyvalue": "memory"}, manifests))
        # Whether other work shared the cores while we measured (builds
        # running beside a benchmark skew it; taking turns below keeps the
        # ratios fairer than the figures).
        others = OthersCpu()

        log("data: keyvalue counter, on disk vs in memory")
        disk, memory = serve([counter]), serve([counter_memory])
        for server in (disk, memory):
            wrk_run(server.addr, seconds=1)  # warm up
        runs = alternating(lambda i: wrk_run(disk.addr), lambda i: wrk_run(memory.addr))
        done()
        f["kv_counter_disk"], f["kv_counter_memory"] = map(loads, runs)
        x["kv_disk_vs_memory"] = f["kv_counter_disk"]["rps"]["median"] / f["kv_counter_memory"]["rps"]["median"]

        for label, size in BLOB_SIZES.items():
            log(f"data: blobstore PUT+GET {size} bytes, guest vs native")
            guest = serve([blobstore])
            http(guest.addr, "PUT", "/bench/warm", b"x")  # the container
            # One wrk thread per connection: each GET follows its PUT (see blob.lua).
            blob = lambda run, seconds=WRK_SECONDS: wrk_run(guest.addr, seconds=seconds, script="blob.lua",
                                                            args=[size, f"{pid}r{run}"], threads=conns)[0]
            blob("warm", 1)
            native_dir = fresh()

            def native(i):
                clear_objects(native_dir)
                return native_data("blob", "--size", size, "--threads", conns, "--seconds", WRK_SECONDS,
                                   "--warmup", 1, "--dir", native_dir)

            def guest_run(i):
                clear_objects(guest.data)
                return blob(i)

            rps, native_runs = alternating(guest_run, native)
            done()  # up to several GB of 1 MiB objects
            f[f"blob_{label}_guest_rps"] = summary(rps)
            # Each request moves `size` bytes: half are PUTs, half GETs.
            f[f"blob_{label}_guest_mb_s"] = summary([r * size / 1e6 for r in rps])
            f[f"blob_{label}_native_ops"] = summary([n["ops_per_s"] for n in native_runs])
            f[f"blob_{label}_native_mb_s"] = summary([n["mb_per_s"] for n in native_runs])
            x[f"blob_{label}_guest_vs_native"] = (f[f"blob_{label}_guest_mb_s"]["median"]
                                                  / f[f"blob_{label}_native_mb_s"]["median"])

        log("data: sql inserts, notes guest vs rusqlite")
        guest = serve([notes])
        http(guest.addr, "POST", "/notes", b"warm\nup")  # the table
        wrk_run(guest.addr, seconds=1, script="notes.lua", args=[f"{pid}warm"])
        native_dir = fresh()
        rps, native_runs = alternating(
            lambda i: wrk_run(guest.addr, script="notes.lua", args=[f"{pid}r{i}"])[0],
            lambda i: native_data("sql", "--threads", conns, "--seconds", WRK_SECONDS, "--warmup", 1,
                                  "--dir", native_dir))
        done()
        f["sql_notes_guest_inserts"] = summary(rps)
        f["sql_native_inserts"] = summary([n["inserts_per_s"] for n in native_runs])
        x["sql_guest_vs_native"] = f["sql_notes_guest_inserts"]["median"] / f["sql_native_inserts"]["median"]

        log("data: messaging, publish -> broker -> handler")
        guest = serve([messaging])
        publish_run(guest.addr, 1)  # warm up
        runs = [publish_run(guest.addr, WRK_SECONDS) for _ in range(RUNS)]
        done()
        f["msg_handled_per_s"] = summary([r[0] for r in runs])
        f["msg_handled"] = summary([r[1] for r in runs])
        f["msg_sent"] = summary([r[2] for r in runs])
        f["msg_refused"] = summary([r[3] for r in runs])
        d["others_cpu_share"] = others.share()
    finally:
        done()
        shutil.rmtree(manifests, ignore_errors=True)
    return d


def render(r):
    f, x = r["figures"], r["ratios"]
    mb = lambda b: f"{b / 1e6:.1f} MB"
    sec = lambda v: f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    num = lambda v: f"{v:,.0f}"
    msf = lambda v: f"{v:.2f}"
    rows = [
        ("binary size, stripped: tailored hello-http", mb(f["size_tailored_hello"]), ""),
        ("  all-backends runtime", mb(f["size_all_backends"]), f"tailored = {x['size_tailored_vs_all_backends']:.2f}×"),
        ("  wasmtime CLI", mb(f["size_wasmtime_cli"]), f"tailored = {x['size_tailored_vs_wasmtime_cli']:.2f}×"),
        ("cold start hello-http: tailored", span(f["cold_tailored_hello"], sec), ""),
        ("  wasmtime serve", span(f["cold_wasmtime_serve_hello"], sec), f"tailored = {x['cold_tailored_vs_serve_hello']:.2f}×"),
        ("cold start hello-python (18 MB): tailored", span(f["cold_tailored_python"], sec), ""),
        ("  wasmtime serve", span(f["cold_wasmtime_serve_python"], sec), f"tailored {x['cold_serve_vs_tailored_python']:.0f}× faster"),
        (f"req/s hello-http, {WRK_CONNECTIONS} conns: tailored", span(f["load_tailored_hello"]["rps"], num), ""),
        ("  wasmtime serve -O pooling-allocator", span(f["load_wasmtime_serve_pooling_hello"]["rps"], num), f"tailored = {x['rps_tailored_vs_serve_pooling']:.2f}×"),
        ("  native hyper (ceiling)", span(f["load_native_hyper"]["rps"], num), f"tailored = {x['rps_tailored_vs_native_hyper']:.2f}×"),
        ("p50 / p99 latency ms: tailored", f"{msf(f['load_tailored_hello']['p50_ms']['median'])} / {msf(f['load_tailored_hello']['p99_ms']['median'])}", ""),
        ("  wasmtime serve -O pooling-allocator", f"{msf(f['load_wasmtime_serve_pooling_hello']['p50_ms']['median'])} / {msf(f['load_wasmtime_serve_pooling_hello']['p99_ms']['median'])}", ""),
        ("  native hyper", f"{msf(f['load_native_hyper']['p50_ms']['median'])} / {msf(f['load_native_hyper']['p99_ms']['median'])}", ""),
        ("qwasr-gen generate (hello-http)", span(f["generate_hello_s"], sec), ""),
        ("qwasr-gen build --release, second app, warm target", sec(f["build_second_app_release_s"]["median"]), ""),
    ]
    return table(rows) + render_sizes(r["size_profile"])


def render_data(d):
    """The data section's table."""
    f, x = d["figures"], d["ratios"]
    num = lambda v: f"{v:,.0f}"
    mbs = lambda v: f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
    msf = lambda v: f"{v:.2f}"
    lat = lambda l: f"{msf(l['p50_ms']['median'])} / {msf(l['p99_ms']['median'])}"
    conns = d["connections"]
    kv_disk, kv_mem = f["kv_counter_disk"], f["kv_counter_memory"]
    rows = [
        (f"keyvalue: counter req/s, {conns} conns: on disk (redb)", span(kv_disk["rps"], num), f"disk = {x['kv_disk_vs_memory']:.2f}× memory"),
        ("  in memory", span(kv_mem["rps"], num), ""),
        ("  p50 / p99 ms: on disk", lat(kv_disk), ""),
        ("  p50 / p99 ms: in memory", lat(kv_mem), ""),
    ]
    for label, size in BLOB_SIZES.items():
        name = "1 KiB" if size < 1 << 20 else "1 MiB"
        rows += [
            (f"blobstore: PUT+GET {name}, {conns} conns: req/s", span(f[f"blob_{label}_guest_rps"], num), ""),
            ("  MB/s (written + read)", span(f[f"blob_{label}_guest_mb_s"], mbs), f"guest = {x[f'blob_{label}_guest_vs_native']:.2f}× native"),
            (f"  native, {conns} threads: ops/s", span(f[f"blob_{label}_native_ops"], num), ""),
            ("  native MB/s", span(f[f"blob_{label}_native_mb_s"], mbs), ""),
        ]
    rows += [
        (f"sql: inserts/s, notes POST /notes, {conns} conns", span(f["sql_notes_guest_inserts"], num), f"guest = {x['sql_guest_vs_native']:.2f}× native"),
        (f"  native rusqlite, {conns} threads (ceiling)", span(f["sql_native_inserts"], num), ""),
        ("messaging: handled/s, publish → broker → handler", span(f["msg_handled_per_s"], num), ""),
        (f"  published (202) per {d['seconds']} s run", span(f["msg_sent"], num), ""),
        ("  handled per run", span(f["msg_handled"], num), ""),
        ("  refused (502, queue full) per run", span(f["msg_refused"], num), ""),
    ]
    others = f"; other processes used {d['others_cpu_share']:.0%} of the CPU meanwhile" if "others_cpu_share" in d else ""
    return table(rows, f"Data backends ({d['runs']} runs of {d['seconds']} s, measured {d['measured']}{others}):")


def render_sizes(profile):
    """Symbol bytes per crate, tailored hello-http beside the all-backends runtime."""
    tailored, everything = profile["tailored_hello"], profile["all_backends"]
    names = list(dict.fromkeys(list(everything) + list(tailored)))
    names.sort(key=lambda n: (n == "(other)", -everything.get(n, 0)))
    kb = lambda b: f"{b / 1e3:,.0f} KB" if b else "—"
    lines = ["", "Size profile (symbol bytes per crate, unstripped):", "",
             "| crate | tailored hello-http | all-backends |", "|---|---|---|"]
    lines += [f"| {n} | {kb(tailored.get(n, 0))} | {kb(everything.get(n, 0))} |" for n in names]
    lines.append(f"| total | {kb(sum(tailored.values()))} | {kb(sum(everything.values()))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
