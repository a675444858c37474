#!/usr/bin/env bash
# Runs the benchmarks (bench/run.py): installs what they need, prints the
# table, writes bench/results.{json,md}.   bench/run.sh [--quick]
# With --only data: only the data backends' rows (builds only what they
# need, no wasmtime CLI; writes bench/results-data.md, merges into results.json).
# With --only p3: only the WASI 0.3 rows (bench/p3.py; bench/results-p3.md).
# With --only services: only the Redis / NATS / PostgreSQL rows (bench/services.py;
# starts the servers with scripts/services.sh; bench/results-services.md).
# With --only speed: guest speed vs wasmtime serve, image size, cold start
# (bench/speed.py; builds bench/guests; bench/results-speed.md).
# With --profile: perf profiles of a tailored runtime and native hyper under
# load instead (bench/profile.py, writes bench/profile.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version=48.0.8   # the wasmtime every qwasr crate pins
cache="${QWASR_BENCH_CACHE:-$HOME/.cache/qwasr-bench}"
wasmtime="$cache/wasmtime-$version/bin/wasmtime"
profile=0; only=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --profile) profile=1 ;;
    --only) only="${args[i + 1]:-}" ;;
  esac
done
case "$only" in
  ""|data|p3|services|speed) ;;
  *) echo "error: --only takes \`data\`, \`p3\`, \`services\` or \`speed\`, not \`$only\`" >&2; exit 2 ;;
esac
core=1; [ -n "$only" ] && core=0
if [ $profile = 0 ] && [ "$only" != data ] && [ "$only" != services ] && ! [ -x "$wasmtime" ]; then
  echo "installing wasmtime-cli $version into $cache (about 18 minutes on 2 cores, once)" >&2
  cargo install -q wasmtime-cli --version "$version" --locked --root "$cache/wasmtime-$version"
fi
# need COMMAND PACKAGE: install the Debian package unless the command exists.
need() {
  command -v "$1" >/dev/null || apt-get install -y -q "$2" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null; apt-get install -y -q "$2" >/dev/null; }
}
need wrk wrk
[ $profile = 0 ] || need perf linux-perf
[ $core = 0 ] || [ -f examples/hello-python/app.wasm ] || scripts/build-examples.sh
cargo build -q -p qwasr-gen
{ [ $core = 1 ] || [ "$only" = speed ]; } && cargo build -q --release -p native-hello
{ [ $core = 1 ] || [ "$only" = speed ]; } && bench/guests/build.sh
[ $profile = 1 ] || [ "$only" = p3 ] || [ "$only" = speed ] || cargo build -q --release -p native-data
if [ $profile = 0 ] && { [ -z "$only" ] || [ "$only" = services ]; }; then
  need redis-benchmark redis-tools
  need pgbench postgresql-contrib
  cargo build -q --release -p native-nats
  while IFS= read -r line; do export "${line?}"; done <<<"$(scripts/services.sh)"
fi
target="${CARGO_TARGET_DIR:-$root/target}"
QWASR_BENCH_WASMTIME="$wasmtime" \
QWASR_BENCH_QWASR_GEN="$target/debug/qwasr-gen" \
QWASR_BENCH_NATIVE="$target/release/native-hello" \
QWASR_BENCH_NATIVE_DATA="$target/release/native-data" \
QWASR_BENCH_NATIVE_NATS="$target/release/native-nats" \
  python3 "bench/$([ $profile = 1 ] && echo profile || echo run).py" "$@"
