#!/usr/bin/env bash
# Every check CI runs, on a fresh machine or this one: rebuild the example
# guests from source, formatting, clippy, and all tests (which build and run
# real runtimes, some against Redis, NATS and PostgreSQL servers that
# scripts/services.sh installs and starts on their own ports).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# Each step says when it starts (minutes:seconds into the run), so a slow
# CI run shows where its time went.
step() { printf '\n==> [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }
trap 'step "done (exit $?)"' EXIT

step "rebuild example guests from source"
scripts/build-examples.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features -q -- -D warnings

step "start the test servers (scripts/services.sh)"
services_env="$(scripts/services.sh)"
while IFS= read -r line; do export "${line?}"; done <<<"$services_env"

step "cargo test"
# Service backend crates compile their modules only under features (a
# runtime enables what its app uses): test them with every one on.
services=(-p qwasr-redis -p qwasr-nats -p qwasr-postgres)
cargo test --workspace --exclude qwasr-redis --exclude qwasr-nats --exclude qwasr-postgres 2>&1
cargo test "${services[@]}" --all-features 2>&1
