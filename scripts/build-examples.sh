#!/usr/bin/env bash
# Rebuilds every example guest from source into examples/<app>/app.wasm.
#
# Uses rustup's wasm32-wasip2 target where it is installed; otherwise
# Debian's rustc-web with -Zbuild-std for wasm32-unknown-unknown (installed
# here with apt if missing), then `qwasr-gen componentize` (built here, or
# the binary $QWASR_GEN names).
#
# The WASI 0.3 guests (hello-p3, qwasr-p3) are ordinary members of the
# examples workspace (wit-bindgen 0.63 with `async-spawn`, WIT in
# examples/wit-p3). spin-rc is a workspace of its own built the way Spin's
# `http-rust` template builds it: `cargo build --target wasm32-wasip2`, or
# here wasm32-wasip1 + Debian's wasi-libc + the preview1 reactor adapter of
# wasmtime 48.0.8 (fetched into the target directory).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}/guests"
say() { printf '%12s %s\n' "$1" "$2" >&2; }

# name  feature  output
guests=(
  "hello-http - examples/hello-http/app.wasm"
  "compute - examples/compute/app.wasm"
  "counter - examples/counter/app.wasm"
  "counter draft2 examples/counter/app-draft2.wasm"
  "limits - examples/limits/app.wasm"
  "blobstore - examples/blobstore/app.wasm"
  "notes - examples/notes/app.wasm"
  "messaging - examples/messaging/app.wasm"
  "everything - examples/everything/everything.wasm"
  "keyvalue-spin - examples/keyvalue-spin/app.wasm"
  "hello-p3 - examples/hello-p3/app.wasm"
  "qwasr-p3 - examples/qwasr-p3/app.wasm"
)
spin=examples/spin-rc/app.wasm
adapter_version=48.0.8

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
  # Exactly the template's build command.
  (cd examples/spin-rc/guest && CARGO_TARGET_DIR="$target" cargo build -q --release --target wasm32-wasip2)
  cp "$target/wasm32-wasip2/release/spin_rc.wasm" "$spin"
  say Built "$spin ($(wc -c <"$spin") bytes)"
  build_python
  exit 0
fi

if ! [ -x /usr/bin/rustc ] || ! /usr/bin/rustc --version 2>/dev/null | grep -q . || ! [ -d /usr/lib/rustlib/src/rust/library ] \
  || ! command -v wasm-ld-22 >/dev/null || ! [ -f /usr/lib/wasm32-wasi/crt1-reactor.o ]; then
  # wasi-libc: only for spin-rc (wasm32-wasip1 links libc and a reactor crt1).
  say Installing "rustc-web, rust-web-src, cargo-web, lld-22, wasi-libc (apt)"
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(rustc-web rust-web-src cargo-web lld-22 wasi-libc)
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
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

# The preview1 reactor adapter that matches wasmtime 48 (its wasi:*@0.2.12
# imports), from the crate that ships it: `cargo metadata` on a throwaway
# package downloads the crate; the adapter is a file inside it.
adapter="$target/adapter-$adapter_version/wasi_snapshot_preview1.reactor.wasm"
if [ ! -f "$adapter" ]; then
  say Fetching "wasi-preview1-component-adapter-provider $adapter_version (crates.io)"
  fetch="$target/adapter-$adapter_version"
  mkdir -p "$fetch/src"
  : >"$fetch/src/lib.rs"
  cat >"$fetch/Cargo.toml" <<TOML
# Written by scripts/build-examples.sh only to download the adapter crate.
[package]
name = "fetch-adapter"
version = "0.0.0"
edition = "2021"

[dependencies]
wasi-preview1-component-adapter-provider = "=$adapter_version"

[workspace]
TOML
  manifest="$(cd "$fetch" && RUSTC=/usr/bin/rustc /usr/bin/cargo metadata -q --format-version 1 \
    | grep -o "\"manifest_path\":\"[^\"]*/wasi-preview1-component-adapter-provider-$adapter_version/Cargo.toml\"" \
    | cut -d'"' -f4)"
  cp "$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm" "$adapter"
fi

# spin-rc: the template says `cargo build --target wasm32-wasip2`; without
# rustup's target, wasm32-wasip1 against Debian's wasi-libc (reactor crt1)
# plus the adapter gives the same WASI 0.3 interfaces (std's own imports come
# out as wasi:*@0.2.12 through the adapter).
(cd examples/spin-rc/guest && RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target" \
  /usr/bin/cargo -Zbuild-std=std,panic_abort build -q --release \
    --target wasm32-wasip1 \
    --config 'target.wasm32-wasip1.linker="wasm-ld-22"' \
    --config 'target.wasm32-wasip1.rustflags=["-C", "link-self-contained=no", "-L", "native=/usr/lib/wasm32-wasi", "-C", "link-arg=/usr/lib/wasm32-wasi/crt1-reactor.o"]')
"$qwasr_gen" componentize "$target/wasm32-wasip1/release/spin_rc.wasm" --adapter "$adapter" -o "$spin" >/dev/null
say Built "$spin ($(wc -c <"$spin") bytes)"

build_python
