#!/usr/bin/env bash
# run.sh runs every benchmark of graceful against its peers (oklog/run, fx, a
# hand-written errgroup) in one go and prints one markdown table, with ratios
# to graceful, the date and the number of cores. Progress goes to stderr, the
# table to stdout. It runs from any directory; extra arguments go to
# cmd/compare (for example -runs 3 -loadruns 1 for a quicker run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

load_start="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
bench="$(mktemp)"
trap 'rm -f "$bench"' EXIT

echo "run.sh: in-process benchmarks (go test -bench, 3 counts, median)" >&2
go test -run '^$' -bench . -benchtime=1s -count=3 . | tee "$bench" >&2

echo "run.sh: process-level comparison (cmd/compare)" >&2
go run ./cmd/compare -dir "$here" -bench "$bench" -nproc "$(nproc)" -loadstart "$load_start" "$@"
