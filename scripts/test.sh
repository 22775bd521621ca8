#!/usr/bin/env bash
# The whole kafkit test suite on a fresh machine: installs the pinned Tansu
# broker when missing (once, ~10 minutes), then runs every test. Tests start
# their own brokers and registries on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --all-targets --locked
cargo run --quiet --locked -p kafkit -- dev install
cargo test --workspace --locked --no-fail-fast "$@"
