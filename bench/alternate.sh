#!/bin/bash
# Runs `pstore bench --local $SERVERS --json --quiet ARGS` (SERVERS: 3 unless set) with two builds in turn, ROUNDS times, and
# prints one line per workload: the way docs/benchmarks.md compares a change with its base
# (alternating, so both see the same machine).
#   bench/alternate.sh OLD_BINARY NEW_BINARY ROUNDS [bench flags...]
#   e.g. bench/alternate.sh /tmp/pstore-base dist/pstore 3 --fsync always --workload cycle --clients 1,8 --duration 3s
set -euo pipefail
old=$1 new=$2 rounds=$3
shift 3
for round in $(seq 1 "$rounds"); do
  for build in "$old" "$new"; do
    "$build" bench --local "${SERVERS:-3}" --json --quiet "$@" | ROUND=$round BUILD=$build python3 -c '
import json, os, sys
for line in sys.stdin:
    try:
        j = json.loads(line)
    except ValueError:
        continue
    release = j.get("release_us", {}).get("p50")
    print(os.environ["ROUND"], os.environ["BUILD"], j["workload"], "clients=%d" % j["clients"], "fsync=%s" % j.get("fsync"),
          "%.0f/s" % j["ops_per_s"], "p50 %.0f us" % j["latency_us"]["p50"], "" if release is None else "release p50 %.0f us" % release)
'
  done
done
