#!/usr/bin/env bash
# Every check CI runs, on a fresh machine or this one: rebuild the example
# guests from source, formatting, clippy, and all tests (which build and run
# real runtimes).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
step() { printf '\n==> %s\n' "$*" >&2; }

step "rebuild example guests from source"
scripts/build-examples.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features -q -- -D warnings

step "cargo test"
cargo test --workspace 2>&1
