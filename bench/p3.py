"""WASI 0.3 rows of the benchmarks (bench/run.py, section `p3`).

- size: hello-http (WASI 0.2) built now and built by the qwasr-gen of the
  last commit before WASI 0.3 support (a git worktree at BEFORE, same target
  directory and profile), and hello-p3 (WASI 0.3): the 0.2 runtime must not
  grow by carrying the 0.3 machinery;
- req/s and p50/p99 of hello-p3 vs hello-http on our runtime, and of
  hello-p3 on ours vs `wasmtime serve` (same 48.0.8 CLI, p3 enabled);
- cold start of hello-p3: ours vs `wasmtime serve`.
"""

import os
import subprocess
import tempfile
from pathlib import Path

import run as R

# The last commit before WASI 0.3 support (issue 9): the data interfaces
# are in, the component-model-async machinery is not.
BEFORE = "1fd7bfe"


def hello_before():
    """hello-http's runtime as the qwasr-gen of BEFORE builds it."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), BEFORE], cwd=R.ROOT,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Its own target dir for the generator; the runtime goes where the others are.
            gen_target = R.ROOT / "target" / "bench-before-gen"
            subprocess.run(["cargo", "build", "-q", "-p", "qwasr-gen"], cwd=tree, check=True,
                           env={**os.environ, "CARGO_TARGET_DIR": str(gen_target)})
            manifest = Path(tmp) / "qwasr.toml"
            manifest.write_text('[app]\nname = "hello-http-before"\n'
                                f'component = "{R.ROOT / "examples/hello-http/app.wasm"}"\n')
            out = subprocess.run([gen_target / "debug" / "qwasr-gen", "build", "--release", "--manifest", manifest],
                                 cwd=tree, env={**os.environ, **R.BUILD_ENV}, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, check=True, text=True)
            return Path(out.stdout.strip())
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=R.ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(results, hello=None):
    """Adds the p3 figures and ratios to `results`."""
    fig, ratio = results["figures"], results["ratios"]
    p3_wasm = R.ROOT / "examples/hello-p3/app.wasm"
    serve_p3 = [R.WASMTIME, "serve", "-C", "cache=n", "-Scli", "-Sp3", "-Wcomponent-model-async",
                "--addr", "{addr}"]

    R.log("p3: building runtimes (release), and hello-http as of " + BEFORE)
    hello = hello or R.build("examples/hello-http/qwasr.toml")
    p3 = R.build("examples/hello-p3/qwasr.toml")
    before = hello_before()

    fig["size_hello_before_p3"] = R.stripped_size(before)
    fig["size_hello_now"] = R.stripped_size(hello)
    fig["size_hello_p3"] = R.stripped_size(p3)
    ratio["size_hello_now_vs_before"] = fig["size_hello_now"] / fig["size_hello_before_p3"]
    ratio["size_p3_vs_p2_hello"] = fig["size_hello_p3"] / fig["size_hello_now"]
    results.setdefault("size_profile", {})["hello_p3"] = R.crate_sizes(p3)

    R.log("p3: cold start")
    fig["cold_tailored_p3"] = R.cold_start([p3])
    fig["cold_wasmtime_serve_p3"] = R.cold_start(serve_p3 + [p3_wasm])
    ratio["cold_tailored_vs_serve_p3"] = (fig["cold_tailored_p3"]["median"]
                                          / fig["cold_wasmtime_serve_p3"]["median"])

    R.log("p3: throughput")
    fig["load_tailored_p3"] = R.wrk([p3])
    fig["load_tailored_p2_same_run"] = R.wrk([hello])
    fig["load_wasmtime_serve_p3"] = R.wrk(serve_p3 + [p3_wasm])
    t3 = fig["load_tailored_p3"]["rps"]["median"]
    ratio["rps_p3_vs_p2_tailored"] = t3 / fig["load_tailored_p2_same_run"]["rps"]["median"]
    ratio["rps_tailored_vs_serve_p3"] = t3 / fig["load_wasmtime_serve_p3"]["rps"]["median"]


def rows(r):
    """Table rows for render()."""
    f, x = r["figures"], r["ratios"]
    if "size_hello_p3" not in f:
        return []
    mb = lambda b: f"{b / 1e6:.2f} MB"
    span = R.span
    sec = lambda v: f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    num = lambda v: f"{v:,.0f}"
    lat = lambda k: f"{f[k]['p50_ms']['median']:.2f} / {f[k]['p99_ms']['median']:.2f}"
    return [
        (f"size, stripped: hello-http (0.2) as of {BEFORE}", mb(f["size_hello_before_p3"]), ""),
        ("  hello-http (0.2) now", mb(f["size_hello_now"]), f"now = {x['size_hello_now_vs_before']:.3f}× before"),
        ("  hello-p3 (0.3)", mb(f["size_hello_p3"]), f"= {x['size_p3_vs_p2_hello']:.2f}× hello-http"),
        ("cold start hello-p3: tailored", span(f["cold_tailored_p3"], sec), ""),
        ("  wasmtime serve -Sp3", span(f["cold_wasmtime_serve_p3"], sec), f"tailored = {x['cold_tailored_vs_serve_p3']:.2f}×"),
        (f"req/s hello-p3 (0.3), {R.WRK_CONNECTIONS} conns: tailored", span(f["load_tailored_p3"]["rps"], num), ""),
        ("  hello-http (0.2), tailored, same run", span(f["load_tailored_p2_same_run"]["rps"], num), f"0.3 = {x['rps_p3_vs_p2_tailored']:.2f}× 0.2"),
        ("  wasmtime serve -Sp3 (hello-p3)", span(f["load_wasmtime_serve_p3"]["rps"], num), f"tailored = {x['rps_tailored_vs_serve_p3']:.2f}×"),
        ("p50 / p99 ms: hello-p3 tailored", lat("load_tailored_p3"), ""),
        ("  hello-http tailored", lat("load_tailored_p2_same_run"), ""),
        ("  wasmtime serve -Sp3", lat("load_wasmtime_serve_p3"), ""),
    ]
