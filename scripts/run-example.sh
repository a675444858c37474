#!/usr/bin/env bash
# The main job, end to end: build qwasr-gen, build an example app's tailored
# runtime from its app.wasm + qwasr.toml, and serve it (embedded defaults).
#
#   scripts/run-example.sh [EXAMPLE]      (default: counter; any examples/*/ with a qwasr.toml)
#
# Listens on $HTTP_ADDR (default 127.0.0.1:8080). Stop with Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
app="${1:-counter}"
if [ ! -f "examples/$app/qwasr.toml" ]; then
  echo "error: no example named '$app'; try one of: $(cd examples && ls -d */qwasr.toml | cut -d/ -f1 | tr '\n' ' ')" >&2
  exit 2
fi
if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install Rust from https://rustup.rs" >&2
  exit 1
fi
export QWASR_TARGET_DIR="${QWASR_TARGET_DIR:-$root/target/qwasr-apps}"
cargo build -q -p qwasr-gen
bin="$("${CARGO_TARGET_DIR:-$root/target}/debug/qwasr-gen" build --manifest "examples/$app/qwasr.toml")"
export HTTP_ADDR="${HTTP_ADDR:-127.0.0.1:8080}"
echo "serving $app on http://$HTTP_ADDR  (try: curl http://$HTTP_ADDR/)" >&2
exec "$bin"
