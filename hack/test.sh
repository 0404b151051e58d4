#!/usr/bin/env bash
# The test command: builds the local stack when it is not cached, runs the gates, starts
# the stack, runs every test against it, and stops it again. A stack that was already
# running before is reused and left running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
started=$SECONDS

hack/stack.sh build

echo "[test] gates: cargo fmt --check, cargo clippy"
cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings

echo "[test] building tests"
cargo test --locked --all-targets --no-run

stack_was_running=0
if hack/stack.sh status >/dev/null 2>&1; then stack_was_running=1; fi
if [[ $stack_was_running == 0 ]]; then
  trap 'hack/stack.sh down' EXIT
fi
hack/stack.sh up
eval "$(hack/stack.sh env)"

echo "[test] running tests"
cargo test --locked --all-targets -- --test-threads "${TEST_THREADS:-4}"
hack/bench.sh --quick

echo "[test] all tests passed in $((SECONDS - started))s"
