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
# and CPU milliseconds per request: the API process's, every `postgres` process's, every
# `redis-server` process's, and the whole machine's (busy time in /proc/stat, both CPUs). SEED (default 1) picks mix.lua's request sequence: the same
# seed asks for the same clients in the same order (so a second run finds the caches warm).
# Non-2xx answers are counted and printed: a run with errors measures the wrong thing.
set -euo pipefail
pid=$1 port=$2 data=$3 mode=$4 connections=${5:-8} seconds=${6:-10} seed=${7:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
all_ticks() { # every process named $1 (ignoring any that exit meanwhile)
  local total=0 p
  for p in $(pgrep -x "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
hz=$(getconf CLK_TCK)
before=$(ticks) pg_before=$(all_ticks postgres) redis_before=$(all_ticks redis-server)
machine_before=$(machine)
out=$(TIDINGS_WRK_OUT=$(mktemp) wrk -t1 "-c$connections" "-d${seconds}s" \
  -s "$here/src/tidings/bench/mix.lua" "http://127.0.0.1:$port/" -- "$data" "$mode" "$seed")
after=$(ticks) pg_after=$(all_ticks postgres) redis_after=$(all_ticks redis-server)
machine_after=$(machine)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
per_request() { awk -v t="$1" -v n="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1000 / hz / n}'; }
cpu=$(per_request $((after - before)))
pg=$(per_request $((pg_after - pg_before)))
redis=$(per_request $((redis_after - redis_before)))
whole=$(per_request $((machine_after - machine_before)))
echo "$mode c=$connections req/s=$rate cpu_ms_per_request=$cpu postgres_ms=$pg redis_ms=$redis" \
  "machine_ms=$whole non_2xx=${errors:-0}"
