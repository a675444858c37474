"""Service backend rows of the benchmarks (bench/run.py, section `services`):
the same guests on Redis, NATS and PostgreSQL against each server's own
tool at the same concurrency (the ceiling a guest could reach).

- counter req/s on Redis vs `redis-benchmark -t incr`; on NATS KV; the
  embedded on-disk counter for reference;
- sql inserts/s of the notes guest on PostgreSQL vs `pgbench` running the
  same INSERT on the same table shape;
- messages/s through NATS: an outside client's requests → the messaging
  guest's handler → its replies back to the outside client, vs a native
  async-nats echo service (bench/native-nats) on the same subject.

Servers: scripts/services.sh (Redis 16379, PostgreSQL 15432, NATS 14222).
"""

import os
import re
import shutil
import subprocess
import tempfile

import run as R

REDIS = os.environ.get("QWASR_TEST_REDIS_URL", "redis://127.0.0.1:16379")
NATS = os.environ.get("QWASR_TEST_NATS_URL", "nats://127.0.0.1:14222")
POSTGRES = os.environ.get("QWASR_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:15432/postgres")
NATIVE_NATS = os.environ.get("QWASR_BENCH_NATIVE_NATS", "native-nats")
PG_SCHEMA = ("CREATE TABLE IF NOT EXISTS notes (id BIGSERIAL PRIMARY KEY, title TEXT NOT NULL UNIQUE, "
             "body TEXT, created TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")


def psql(url, sql):
    subprocess.run(["psql", url, "-qXc", sql], check=True, stdout=subprocess.DEVNULL)


def redis_benchmark(conns):
    """INCR requests/s of redis-benchmark at `conns` connections."""
    port = re.search(r":(\d+)", REDIS.split("//", 1)[1]).group(1)
    out = subprocess.run(["redis-benchmark", "-p", port, "-t", "incr", "-c", str(conns),
                          "-n", str(40_000 * R.WRK_SECONDS), "-q"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return float(re.search(r"INCR: ([\d.]+) requests per second", out).group(1))


def pgbench(url, conns, seconds):
    """Transactions/s of pgbench running the notes insert at `conns` clients."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        # The guest's statement; titles unique per client and transaction.
        f.write("INSERT INTO notes (title, body) VALUES ('p' || :client_id || '-' || random(), "
                "'benchmark note') RETURNING id;\n")
        script = f.name
    try:
        out = subprocess.run(["pgbench", "-n", "-c", str(conns), "-j", "2", "-T", str(seconds), "-f", script, url],
                             check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    finally:
        os.unlink(script)
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def nats_load(subject):
    out = subprocess.run([NATIVE_NATS, "load", "--url", NATS, "--subject", subject, "--concurrency",
                          str(R.WRK_CONNECTIONS), "--seconds", str(R.WRK_SECONDS), "--warmup", "1"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return R.json.loads(out)


def services_section():
    d = {"measured": R.time.strftime("%Y-%m-%d %H:%M:%S"), "runs": R.RUNS, "seconds": R.WRK_SECONDS,
         "connections": R.WRK_CONNECTIONS, "figures": {}, "ratios": {}}
    f, x = d["figures"], d["ratios"]
    conns, tag = R.WRK_CONNECTIONS, f"b{os.getpid()}"
    manifests = tempfile.mkdtemp()
    servers, dirs = [], []

    def serve(binary, env):
        data = R.data_dir()
        dirs.append(data)
        servers.append(R.Server([binary], {"QWASR_DATA_DIR": data, **env}))
        R.wait_up(servers[-1])
        return servers[-1]

    def done():
        while servers:
            servers.pop().stop()
        while dirs:
            shutil.rmtree(dirs.pop(), ignore_errors=True)

    pg_db = f"{tag}notes"
    pg_bench_db = f"{tag}pgbench"
    try:
        R.log("services: building runtimes (release)")
        counter = R.build("examples/counter/qwasr.toml")
        counter_redis = R.build(R.variant("counter", "counter-redis", {"keyvalue": "redis"}, manifests))
        counter_nats = R.build(R.variant("counter", "counter-nats", {"keyvalue": "nats"}, manifests))
        notes_pg = R.build(R.variant("notes", "notes-postgres", {"sql": {"backend": "postgres", "pool-size": conns}},
                                     manifests))
        messaging_nats = R.build(R.variant("messaging", "messaging-nats", {"messaging": "nats", "keyvalue": "memory"},
                                           manifests))
        others = R.OthersCpu()

        R.log("services: counter on Redis vs redis-benchmark INCR; NATS KV; embedded")
        redis = serve(counter_redis, {"REDIS_URL": REDIS, "REDIS_PREFIX": f"{tag}:"})
        R.wrk_run(redis.addr, seconds=1)
        runs, ceiling = R.alternating(lambda i: R.wrk_run(redis.addr), lambda i: redis_benchmark(conns))
        f["counter_redis"], f["redis_benchmark_incr"] = R.loads(runs), R.summary(ceiling)
        x["counter_redis_vs_redis_benchmark"] = f["counter_redis"]["rps"]["median"] / f["redis_benchmark_incr"]["median"]
        done()
        nats_kv = serve(counter_nats, {"NATS_URL": NATS, "NATS_PREFIX": f"{tag}_"})
        disk = serve(counter, {})
        for s in (nats_kv, disk):
            R.wrk_run(s.addr, seconds=1)
        runs = R.alternating(lambda i: R.wrk_run(nats_kv.addr), lambda i: R.wrk_run(disk.addr))
        f["counter_nats_kv"], f["counter_embedded_disk"] = map(R.loads, runs)
        x["counter_nats_kv_vs_redis_benchmark"] = f["counter_nats_kv"]["rps"]["median"] / f["redis_benchmark_incr"]["median"]
        x["counter_redis_vs_embedded"] = f["counter_redis"]["rps"]["median"] / f["counter_embedded_disk"]["rps"]["median"]
        done()

        R.log("services: sql inserts, notes on PostgreSQL vs pgbench")
        base = POSTGRES.rsplit("/", 1)[0]
        psql(POSTGRES, f'CREATE DATABASE "{pg_bench_db}"')
        psql(f"{base}/{pg_bench_db}", PG_SCHEMA)
        guest = serve(notes_pg, {"POSTGRES_URL": POSTGRES, "POSTGRES_PREFIX": tag})
        R.http(guest.addr, "POST", "/notes", b"warm\nup")
        R.wrk_run(guest.addr, seconds=1, script="notes.lua", args=[f"{tag}warm"])
        rps, ceiling = R.alternating(
            lambda i: R.wrk_run(guest.addr, script="notes.lua", args=[f"{tag}r{i}"])[0],
            lambda i: pgbench(f"{base}/{pg_bench_db}", conns, R.WRK_SECONDS))
        f["sql_postgres_guest_inserts"], f["sql_pgbench_inserts"] = R.summary(rps), R.summary(ceiling)
        x["sql_postgres_guest_vs_pgbench"] = f["sql_postgres_guest_inserts"]["median"] / f["sql_pgbench_inserts"]["median"]
        done()

        R.log("services: messages through NATS, guest handler vs native echo")
        subject = f"rpc.{tag}"
        serve(messaging_nats, {"NATS_URL": NATS})
        guest_runs = [nats_load(subject) for _ in range(R.RUNS)]
        done()
        echo = subprocess.Popen([NATIVE_NATS, "echo", "--url", NATS, "--subject", subject, "--queue", "native"])
        try:
            R.time.sleep(0.5)
            native_runs = [nats_load(subject) for _ in range(R.RUNS)]
        finally:
            echo.kill()
            echo.wait()
        f["nats_guest_replies_per_s"] = R.summary([r["replies_per_s"] for r in guest_runs])
        f["nats_guest_timeouts"] = R.summary([r["timeouts"] for r in guest_runs])
        f["nats_native_replies_per_s"] = R.summary([r["replies_per_s"] for r in native_runs])
        x["nats_guest_vs_native"] = f["nats_guest_replies_per_s"]["median"] / f["nats_native_replies_per_s"]["median"]
        d["others_cpu_share"] = others.share()
    finally:
        done()
        shutil.rmtree(manifests, ignore_errors=True)
        for db in (pg_db, pg_bench_db):
            subprocess.run(["psql", POSTGRES, "-qXc", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d


def render(d):
    f, x = d["figures"], d["ratios"]
    span = R.span
    num = lambda v: f"{v:,.0f}"
    lat = lambda l: f"{l['p50_ms']['median']:.2f} / {l['p99_ms']['median']:.2f}"
    conns = d["connections"]
    rows = [
        (f"counter req/s, {conns} conns: on Redis", span(f["counter_redis"]["rps"], num),
         f"{x['counter_redis_vs_redis_benchmark']:.2f}× redis-benchmark"),
        (f"  redis-benchmark -t incr -c {conns} (ceiling)", span(f["redis_benchmark_incr"], num), ""),
        ("  on NATS KV", span(f["counter_nats_kv"]["rps"], num),
         f"{x['counter_nats_kv_vs_redis_benchmark']:.2f}× redis-benchmark"),
        ("  embedded on disk (reference)", span(f["counter_embedded_disk"]["rps"], num),
         f"Redis = {x['counter_redis_vs_embedded']:.2f}× embedded"),
        ("  p50 / p99 ms: Redis · NATS KV · embedded",
         f"{lat(f['counter_redis'])} · {lat(f['counter_nats_kv'])} · {lat(f['counter_embedded_disk'])}", ""),
        (f"sql inserts/s, notes on PostgreSQL, {conns} conns", span(f["sql_postgres_guest_inserts"], num),
         f"{x['sql_postgres_guest_vs_pgbench']:.2f}× pgbench"),
        (f"  pgbench, same INSERT, {conns} clients (ceiling)", span(f["sql_pgbench_inserts"], num), ""),
        (f"messages/s through NATS, {conns} outstanding: guest handler", span(f["nats_guest_replies_per_s"], num),
         f"{x['nats_guest_vs_native']:.2f}× native"),
        ("  native async-nats echo (ceiling)", span(f["nats_native_replies_per_s"], num), ""),
    ]
    others = (f"; other processes, the servers under test among them, used {d['others_cpu_share']:.0%} of the CPU"
              " meanwhile" if "others_cpu_share" in d else "")
    return R.table(rows, f"Service backends ({d['runs']} runs of {d['seconds']} s, measured {d['measured']}{others}):")
