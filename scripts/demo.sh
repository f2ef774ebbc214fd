#!/usr/bin/env bash
# The README's main job: build rigd, rig and the demo services, then bring up the demo
# environment (examples/demo/spec.json) and follow it until Ctrl-C. Extra arguments go to
# `rig up` (e.g. `scripts/demo.sh --logs`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --quiet --bin rigd --bin rig && cargo build --quiet -p rig-examples --bin rig-demo
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
bin="${target_dir}/debug"

# The demo's services are found on PATH, which `rig up` hands to rigd as the services' host env.
export PATH="${bin}:${PATH}"
exec "${bin}/rig" up examples/demo/spec.json --logs "$@"
