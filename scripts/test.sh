#!/usr/bin/env bash
# The project's one test command (README "Set-up", step 2; .ci/run calls exactly this).
# Installs what the tests need when it is missing, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
