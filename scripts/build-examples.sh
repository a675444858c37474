#!/usr/bin/env bash
# Rebuilds every example guest from source into examples/<app>/app.wasm.
#
# Uses rustup's wasm32-wasip2 target where it is installed; otherwise
# Debian's rustc-web with -Zbuild-std for wasm32-unknown-unknown (installed
# here with apt if missing), then `qwasr-gen componentize` (built here, or
# the binary $QWASR_GEN names).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}/guests"
say() { printf '%12s %s\n' "$1" "$2" >&2; }

# name  feature  output
guests=(
  "hello-http - examples/hello-http/app.wasm"
  "counter - examples/counter/app.wasm"
  "counter draft2 examples/counter/app-draft2.wasm"
  "limits - examples/limits/app.wasm"
  "blobstore - examples/blobstore/app.wasm"
  "notes - examples/notes/app.wasm"
  "messaging - examples/messaging/app.wasm"
  "everything - examples/everything/everything.wasm"
  "keyvalue-spin - examples/keyvalue-spin/app.wasm"
)

build_python() {
  # componentize-py ships CPython and works offline; pip installs it in seconds.
  local scripts
  scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  if ! "$scripts/componentize-py" --version 2>/dev/null | grep -q '0\.25\.'; then
    say Installing "componentize-py 0.25 (pip)"
    python3 -m pip install -q --disable-pip-version-check 'componentize-py==0.25.*' >/dev/null 2>&1
  fi
  (cd examples/hello-python && "$scripts/componentize-py" -d ../wit -w hello-python componentize app -o app.wasm >/dev/null)
  say Built "examples/hello-python/app.wasm ($(wc -c <examples/hello-python/app.wasm) bytes)"
}

if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  say Using "rustup's wasm32-wasip2 target"
  for g in "${guests[@]}"; do
    read -r name feature out <<<"$g"
    flags=(); [ "$feature" != - ] && flags=(--features "$feature")
    (cd examples && CARGO_TARGET_DIR="$target" cargo build -q --release --target wasm32-wasip2 -p "$name" "${flags[@]}")
    cp "$target/wasm32-wasip2/release/${name//-/_}.wasm" "$out"
    say Built "$out ($(wc -c <"$out") bytes)"
  done
  build_python
  exit 0
fi

if ! [ -x /usr/bin/rustc ] || ! /usr/bin/rustc --version 2>/dev/null | grep -q . || ! [ -d /usr/lib/rustlib/src/rust/library ] || ! command -v wasm-ld-22 >/dev/null; then
  say Installing "rustc-web, rust-web-src, cargo-web, lld-22 (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends rustc-web rust-web-src cargo-web lld-22 >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends rustc-web rust-web-src cargo-web lld-22 >/dev/null
  }
fi

qwasr_gen="${QWASR_GEN:-}"
if [ -z "$qwasr_gen" ]; then
  say Building "qwasr-gen (for componentize)"
  cargo build -q -p qwasr-gen
  qwasr_gen="${CARGO_TARGET_DIR:-$root/target}/debug/qwasr-gen"
fi

for g in "${guests[@]}"; do
  read -r name feature out <<<"$g"
  flags=(); [ "$feature" != - ] && flags=(--features "$feature")
  (cd examples && RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target" \
    /usr/bin/cargo -Zbuild-std=std,panic_abort build -q --release \
      --target wasm32-unknown-unknown \
      --config 'target.wasm32-unknown-unknown.linker="wasm-ld-22"' \
      -p "$name" "${flags[@]}")
  "$qwasr_gen" componentize "$target/wasm32-unknown-unknown/release/${name//-/_}.wasm" -o "$out" >/dev/null
  say Built "$out ($(wc -c <"$out") bytes)"
done

build_python
