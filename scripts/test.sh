#!/usr/bin/env bash
# The whole kafkit test suite on a fresh machine: installs the pinned Tansu
# broker when missing (once, ~10 minutes), the deployment and contract check
# tools (a Python virtualenv, seconds) and headless Chromium with its
# WebDriver (Debian packages, for the console's browser test), then runs
# every test. Tests start their
# own brokers and registries on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --all-targets --locked
cargo run --quiet --locked -p kafkit -- dev install
scripts/install-deploy-tools.sh
scripts/install-browser.sh
# Docs of the library crates must build without warnings (missing docs, broken links).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -p kafkit-events -p kafkit-events-derive -p kafkit-messaging -p kafkit-runtime -p kafkit-telemetry
# The library crates package as they would be published (metadata, files).
for crate in kafkit-events kafkit-events-derive kafkit-messaging kafkit-runtime kafkit-telemetry; do
    cargo package --list --locked --allow-dirty -p "$crate" >/dev/null
done
cargo test --workspace --locked --no-fail-fast "$@"
