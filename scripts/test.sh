#!/usr/bin/env bash
# The whole test suite: installs what is missing (fast when present), then format, lints and tests.
# Tests that need ../shared (MVTec AD bottle, magnetic tile, the official reference outputs)
# skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked -- --test-threads=2
