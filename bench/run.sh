#!/usr/bin/env bash
# `make bench`: installs its tools if missing (wrk and valgrind from Debian packages, matplotlib
# into .venv), builds and runs the bench driver (harness/src/bin/bench.rs), draws the chart and
# prints the table.
# Expects ENVOY_BIN (the Makefile sets it) and a built wasm (`make wasm`).
# Extra arguments go to the driver (`bench/run.sh --rounds 5`; see `--help`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
RESULTS="$ROOT/bench/results"
# `--out DIR` (e.g. a run on a busy machine that must not replace bench/results) also moves the chart.
prev=""
for arg in "$@"; do
    [ "$prev" = "--out" ] && RESULTS="$arg"
    prev="$arg"
done

# callgrind_control comes with valgrind (the instruction counts of `--instructions`).
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v callgrind_control >/dev/null 2>&1 || missing="$missing valgrind"
if [ -n "$missing" ]; then
    echo "bench: installing$missing (Debian packages)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update
    # shellcheck disable=SC2086
    $SUDO apt-get install -y $missing
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import matplotlib" >/dev/null 2>&1; then
    echo "bench: installing matplotlib into .venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check matplotlib
fi

: "${ENVOY_BIN:?set ENVOY_BIN to the Envoy binary (make bench does)}"
export ENVOY_BIN

cargo build --quiet --release -p harness --bin bench
mkdir -p "$RESULTS"
"$ROOT/target/release/bench" --out "$RESULTS" "$@"
"$VENV/bin/python" "$ROOT/bench/chart.py" "$RESULTS/latest.json" "$RESULTS/latest.png"
echo
cat "$RESULTS/latest.md"
echo
echo "chart: $RESULTS/latest.png"
