#!/usr/bin/env python3
"""qwasr-gen benchmarks: figures measured side by side in one run.

Every comparison is a ratio of two figures measured here, now, on this
machine; each figure is the median of several runs, with min and max.
Prints a table and writes it to bench/results.json (and results.md).

    bench/run.sh [--quick]

Needs: cargo, wrk (apt), the wasmtime CLI of the same version as ours
(installed by bench/run.sh into ~/.cache/qwasr-bench, ~18 min the first
time), componentize-py (pip; for the large component).
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 5
WRK_SECONDS = 3 if QUICK else 8
WRK_CONNECTIONS = 16
TARGET = Path(os.environ.get("QWASR_BENCH_TARGET_DIR", ROOT / "target" / "bench"))
WASMTIME = Path(os.environ["QWASR_BENCH_WASMTIME"])
QWASR_GEN = Path(os.environ["QWASR_BENCH_QWASR_GEN"])
NATIVE = Path(os.environ["QWASR_BENCH_NATIVE"])
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
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


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

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cold_start(cmd):
    times = []
    for _ in range(RUNS):
        s = Server(cmd)
        try:
            times.append(s.first_ok())
        finally:
            s.stop()
    return summary(times)


def wrk_run(addr, path="/", seconds=WRK_SECONDS):
    """One wrk run at fixed concurrency: (req/s, p50 ms, p99 ms); errors raise."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", f"http://{addr}{path}"],
        stdout=subprocess.PIPE, check=True, text=True,
    ).stdout
    errors = [l for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    if errors:
        raise RuntimeError(f"wrk saw errors: {errors}")
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(parts[1])
        elif parts[:1] in (["50%"], ["99%"]):
            figures[parts[0]] = ms(parts[1])
    return figures["rps"], figures["50%"], figures["99%"]


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
    results = {"machine": {"cores": os.cpu_count()}, "wasmtime": str(WASMTIME), "figures": {}, "ratios": {}}
    fig, ratio = results["figures"], results["ratios"]
    hello_wasm = ROOT / "examples/hello-http/app.wasm"
    python_wasm = ROOT / "examples/hello-python/app.wasm"
    serve = [WASMTIME, "serve", "-C", "cache=n", "--addr", "{addr}"]

    log("building runtimes (release)")
    hello = build("examples/hello-http/qwasr.toml")
    counter = build("examples/counter/qwasr.toml")
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
    fig["load_tailored_counter_embedded"] = wrk([counter])
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

    (ROOT / "bench/results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    (ROOT / "bench/results.md").write_text(table)
    print(table)


def render(r):
    f, x = r["figures"], r["ratios"]
    mb = lambda b: f"{b / 1e6:.1f} MB"
    span = lambda s, fmt: f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"
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
        ("req/s counter (http + keyvalue, embedded)", span(f["load_tailored_counter_embedded"]["rps"], num), ""),
        ("p50 / p99 latency ms: tailored", f"{msf(f['load_tailored_hello']['p50_ms']['median'])} / {msf(f['load_tailored_hello']['p99_ms']['median'])}", ""),
        ("  wasmtime serve -O pooling-allocator", f"{msf(f['load_wasmtime_serve_pooling_hello']['p50_ms']['median'])} / {msf(f['load_wasmtime_serve_pooling_hello']['p99_ms']['median'])}", ""),
        ("  native hyper", f"{msf(f['load_native_hyper']['p50_ms']['median'])} / {msf(f['load_native_hyper']['p99_ms']['median'])}", ""),
        ("qwasr-gen generate (hello-http)", span(f["generate_hello_s"], sec), ""),
        ("qwasr-gen build --release, second app, warm target", sec(f["build_second_app_release_s"]["median"]), ""),
    ]
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    lines = [f"| {'measure'.ljust(w)} | {'median (min–max)'.ljust(v)} | ratio |", f"|{'-' * (w + 2)}|{'-' * (v + 2)}|---|"]
    lines += [f"| {a.ljust(w)} | {b.ljust(v)} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n" + render_sizes(r["size_profile"])


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
