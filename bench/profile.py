#!/usr/bin/env python3
"""Where a tailored runtime spends its time per request: `perf record`
(cpu-clock sampling, so it works in VMs without hardware counters) of the
hello-http runtime under wrk, and of native hyper under the same load for
comparison. Prints both profiles grouped by component, writes
bench/profile.md.

    bench/run.sh --profile       (builds what it needs, then runs this)
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the bench's build and server helpers)

SECONDS = 8
HZ = 2000  # samples per second of CPU time
GUEST = "(guest code)"
# Symbol patterns, first match wins: what each part of the per-request path costs.
GROUPS = [
    ("guest code (precompiled wasm)", r"^\(guest code\)$"),
    ("kernel: memory mapping, page faults", r"madvise|mmap|munmap|mprotect|page_fault|do_anonymous|clear_page|zap_|unmap|tlb|folio|pte|lru|memcg|vma|pagemap"),
    ("kernel: network (tcp/epoll/syscalls)", r"tcp_|sock|skb|epoll|ip_|__x64_sys|do_syscall|entry_SYSCALL|net_|loopback|napi|syscall_exit|sys_recv|sys_send|sys_write|sys_read|ep_|syscall"),
    ("kernel: scheduling, futex", r"futex|schedule|sched|switch|wake|idle|finish_task|irq|softirq|rcu|hrtimer|timer"),
    ("wasmtime: instantiate, store, pooling", r"wasmtime::runtime::(instance|store|vm::(instance|mpk|memory|table|cow|pooling|vmcontext))|InstancePre|instantiate|pooling|MemoryImage|Store<|StoreOpaque|InstanceAllocator|decommit|GcHeap|ModuleRegistry|drop_in_place<wasmtime::"),
    ("wasmtime: component calls, fibers", r"wasmtime(::|_)|cranelift|fiber|Fiber|wasmtime_fiber|component::func|typed::|lift|lower|trampoline"),
    ("wasmtime-wasi / wasi-http host calls", r"wasmtime_wasi|wasi_http|WasiHttp|WasiCtx|ResourceTable|cap_rand|cap_std|rand::"),
    ("hyper / http", r"hyper|http::|httparse|h1|http_body"),
    ("tokio", r"tokio"),
    ("allocator, memcpy", r"malloc|free|realloc|memcpy|memmove|memset|_int_|calloc|cfree|alloc::"),
]


def profile(cmd, path="/"):
    """Samples `cmd` (a server) under wrk; returns ({symbol: samples}, req/s)."""
    server = run.Server(cmd)
    data = Path(tempfile.mkdtemp()) / "perf.data"
    try:
        server.first_ok(path)
        run.wrk_run(server.addr, path, seconds=1)  # warm up
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", str(HZ), "-p", str(server.proc.pid),
                                 "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rps, _, _ = run.wrk_run(server.addr, path, seconds=SECONDS)
        perf.send_signal(2)
        perf.wait()
    finally:
        server.stop()
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,sym",
                             "-F", "sample,dso,sym", "--percent-limit", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, text=True).stdout
    samples = {}
    for line in report.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S.*?)\s+\[[.k]\]\s+(.*)$", line)
        if m:
            # Code wasmtime loaded (the guest) has no symbols perf knows.
            sym = GUEST if m.group(2).startswith("[JIT]") or m.group(2) == "[unknown]" else m.group(3).strip()
            samples[sym] = samples.get(sym, 0) + int(m.group(1))
    return samples, rps


def grouped(samples):
    groups = {name: 0 for name, _ in GROUPS}
    groups["other"] = 0
    for sym, n in samples.items():
        for name, pattern in GROUPS:
            if re.search(pattern, sym):
                groups[name] += n
                break
        else:
            groups["other"] += n
    return groups


def main():
    run.log("building hello-http (release, with symbols)")
    hello = run.build("examples/hello-http/qwasr.toml")
    sections = []
    figures = {}
    for label, cmd in (("tailored hello-http", [hello]), ("native hyper", [run.NATIVE])):
        run.log(f"profiling {label}")
        samples, rps = profile(cmd)
        total = sum(samples.values()) or 1
        figures[label] = rps
        # Samples per request: CPU time of the server process only (wrk excluded).
        per_req_us = total / HZ / (rps * SECONDS) * 1e6
        lines = [f"### {label}: {rps:,.0f} req/s, ~{per_req_us:.0f} µs of server CPU per request", "",
                 "| where | share |", "|---|---|"]
        for name, n in sorted(grouped(samples).items(), key=lambda kv: -kv[1]):
            if n:
                lines.append(f"| {name} | {100 * n / total:.1f}% |")
        lines += ["", "Top symbols:", "", "| symbol | share |", "|---|---|"]
        for sym, n in sorted(samples.items(), key=lambda kv: -kv[1])[:25]:
            lines.append(f"| `{sym[:110].replace('|', '/')}` | {100 * n / total:.1f}% |")
        sections.append("\n".join(lines))
    text = (f"## Per-request profile (`bench/run.sh --profile`, perf cpu-clock, wrk -c{run.WRK_CONNECTIONS}, "
            f"{SECONDS} s, target dir {run.TARGET.name})\n\n" + "\n\n".join(sections) + "\n")
    # Hand-written findings above the marker stay; the profile below is replaced.
    path = run.ROOT / "bench/profile.md"
    old = path.read_text() if path.exists() else ""
    head = old.split(MARKER)[0] if MARKER in old else ""
    path.write_text(head + MARKER + "\n\n" + text)
    print(text)


MARKER = "<!-- below: written by bench/run.sh --profile -->"


if __name__ == "__main__":
    main()
