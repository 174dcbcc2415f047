#!/bin/bash
# CPU, page faults and read/write system calls per operation of each process of a local cluster
# and of the bench process, over 4 s of a 10 s run from its 5th second (the JIT still compiles
# hot functions for several seconds): where a workload's CPU goes. To set against what a bare
# relay spends per pass: `bun bench/floor.ts` prints it.
#   bench/cpu_per_cycle.sh BINARY [bench flags...]   (default: --workload cycle --clients 8)
#   e.g. bench/cpu_per_cycle.sh dist/pstore --workload cycle --clients 8 --no-share
# `syscw` of /proc/PID/io counts write-like calls on files (log writes), not socket sends.
set -euo pipefail
binary=$(readlink -f "$1")
shift
flags=("$@")
[ ${#flags[@]} -eq 0 ] && flags=(--workload cycle --clients 8)
dir=$(mktemp -d /tmp/pstore-cpu.XXXXXX)
port=$((20000 + RANDOM % 20000))
"$binary" local --fsync off --data-dir "$dir/data" --base-port "$port" --quiet > "$dir/local.log" 2>&1 &
cluster=$!
trap 'kill $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$dir"' EXIT
servers="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
for _ in $(seq 1 100); do
  [ "$(pgrep -P $cluster | wc -l)" -ge 3 ] && break
  sleep 0.1
done
sleep 1
"$binary" bench --servers "$servers" --duration 10s --warmup 1s --json --quiet "${flags[@]}" > "$dir/bench.json" &
bench=$!
sleep 5
pids="$(pgrep -P $cluster | tr '\n' ' ') $bench"
# CPU in ns from every thread's schedstat (the ticks of /proc/PID/stat are 10 ms).
cpu_ns() { cat /proc/$1/task/*/schedstat 2>/dev/null | awk '{ns += $1} END {printf "%.0f", ns}'; }
sample() { for p in $pids; do echo "$p $(cpu_ns $p) $(awk '{print $10}' /proc/$p/stat) $(awk '/^syscr|^syscw/ {printf "%s ", $2}' /proc/$p/io)"; done; }
before=$(sample)
t0=$(date +%s.%N)
sleep 4
after=$(sample)
t1=$(date +%s.%N)
wait $bench
ops=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["ops_per_s"])' "$dir/bench.json")
python3 - "$ops" "$(echo "$t1 - $t0" | bc)" "$before" "$after" <<'EOF'
import sys
ops, seconds = float(sys.argv[1]), float(sys.argv[2])
parse = lambda text: {l.split()[0]: list(map(float, l.split()[1:])) for l in text.strip().split("\n")}
before, after = parse(sys.argv[3]), parse(sys.argv[4])
done = ops * seconds
print(f"{ops:,.0f} ops/s")
for index, pid in enumerate(before):
    d = [a - b for a, b in zip(after[pid], before[pid])]
    name = f"server {index + 1}" if index < len(before) - 1 else "bench"
    print(f"{name:9} (pid {pid}): CPU {d[0] / 1e3 / done:6.1f} µs/op, faults {d[1] / done:5.2f}/op, reads {d[2] / done:5.2f}/op, writes {d[3] / done:5.2f}/op")
EOF
