#!/usr/bin/env bash
# Builds the benchmark's interpreter guests into <target>/bench/guests:
# json-python.wasm and hello-python.wasm (componentize-py 0.25, PyPI) and json-js.wasm
# (componentize-js 0.23, npm, cached under ~/.cache/qwasr-bench).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${QWASR_BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/bench}/guests"
cache="${QWASR_BENCH_CACHE:-$HOME/.cache/qwasr-bench}/componentize-js-0.23.0"
mkdir -p "$out"

scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
if ! "$scripts/componentize-py" --version 2>/dev/null | grep -q '0\.25\.'; then
  python3 -m pip install -q --disable-pip-version-check 'componentize-py==0.25.*' >/dev/null 2>&1
fi
(cd "$here/json-python" && "$scripts/componentize-py" -d "$root/examples/wit" -w hello-python \
  componentize app -o "$out/json-python.wasm" >/dev/null)
# The hello-python example too (cold start of an 18 MB guest doing no work).
(cd "$root/examples/hello-python" && "$scripts/componentize-py" -d ../wit -w hello-python \
  componentize app -o "$out/hello-python.wasm" >/dev/null)

if ! [ -d "$cache/node_modules/@bytecodealliance/componentize-js" ]; then
  mkdir -p "$cache"
  (cd "$cache" && echo '{"private":true}' >package.json &&
    npm install -q --no-audit --no-fund @bytecodealliance/componentize-js@0.23.0 >/dev/null)
fi
NODE_PATH="$cache/node_modules" node --input-type=module -e "
import { componentize } from '$cache/node_modules/@bytecodealliance/componentize-js/src/componentize.js';
import { writeFile } from 'node:fs/promises';
const { component } = await componentize({
  sourcePath: '$here/json-js/app.js', witPath: '$here/json-js/wit', worldName: 'json-js' });
await writeFile('$out/json-js.wasm', component);"
echo "built json-python, hello-python and json-js in $out" >&2
