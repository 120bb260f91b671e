#!/usr/bin/env bash
# CPU time one API worker spends per request, for one workload of src/tidings/bench/mix.lua.
#
#   bench/cpu_per_request.sh PID PORT DATA_FILE MODE [CONNECTIONS] [SECONDS] [SEED]
#
# PID: the process that serves the requests (`tidings serve` with one worker is a single
# process); PORT: where it listens on 127.0.0.1; DATA_FILE: a workload file as written by
# tidings.bench.workload.Workload.write (tokens expire with TIDINGS_ACCESS_TOKEN_TTL_SECONDS);
# MODE: feed, timeline, compose, like or follow. Reads the process's user+system CPU ticks from
# /proc before and after a bounded wrk run (default 8 connections, 10 s) and prints requests/s
# and CPU milliseconds per request. SEED (default 1) picks mix.lua's request sequence: the same
# seed asks for the same clients in the same order (so a second run finds the caches warm).
# Non-2xx answers are counted and printed: a run with errors measures the wrong thing.
set -euo pipefail
pid=$1 port=$2 data=$3 mode=$4 connections=${5:-8} seconds=${6:-10} seed=${7:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
out=$(TIDINGS_WRK_OUT=$(mktemp) wrk -t1 "-c$connections" "-d${seconds}s" \
  -s "$here/src/tidings/bench/mix.lua" "http://127.0.0.1:$port/" -- "$data" "$mode" "$seed")
after=$(ticks)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
cpu=$(awk -v t=$((after - before)) -v n="$requests" -v hz="$hz" \
  'BEGIN {printf "%.2f", t * 1000 / hz / n}')
echo "$mode c=$connections req/s=$rate cpu_ms_per_request=$cpu non_2xx=${errors:-0}"
