#!/usr/bin/env bash
# The benchmark command: builds the release binary and the bench target, starts the
# local stack when it is not running, runs benches/registry against it, and stops the
# stack again only if this script started it.
#
#   hack/bench.sh           full mode: 3 runs per figure, steady state of 1k, 10k and
#                           100k nodes (about 30 minutes on 2 cores)
#   hack/bench.sh --quick   tiny sizes, one run (under a minute once built)
#
# Results are printed as Markdown tables. The exit status is non-zero only when the
# build fails or a measurement could not be taken, never because a figure missed its
# target.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

args=()
for arg in "$@"; do
  case "$arg" in
    --quick) args+=(--quick) ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hack/bench.sh: unknown argument '$arg' (expected --quick)" >&2; exit 2 ;;
  esac
done

echo "[bench] building the release binary and the bench target" >&2
cargo build --release --locked
cargo bench --locked --bench registry --no-run

stack_was_running=0
if hack/stack.sh status >/dev/null 2>&1; then stack_was_running=1; fi
if [[ $stack_was_running == 0 ]]; then
  trap 'hack/stack.sh down' EXIT
fi
hack/stack.sh up
eval "$(hack/stack.sh env)"

cargo bench --locked --bench registry -- "${args[@]}"
