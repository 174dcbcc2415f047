#!/bin/bash
# CPU, page faults and read/write system calls per operation of each process of a local cluster
# and of the bench process, over the middle 3 s of a 6 s run: where a workload's CPU goes.
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
"$binary" bench --servers "$servers" --duration 6s --warmup 1s --json --quiet "${flags[@]}" > "$dir/bench.json" &
bench=$!
sleep 2.5
pids="$(pgrep -P $cluster | tr '\n' ' ') $bench"
sample() { for p in $pids; do echo "$p $(awk '{print $14 + $15, $10}' /proc/$p/stat) $(awk '/^syscr|^syscw/ {printf "%s ", $2}' /proc/$p/io)"; done; }
before=$(sample)
t0=$(date +%s.%N)
sleep 3
after=$(sample)
t1=$(date +%s.%N)
wait $bench
ops=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["ops_per_s"])' "$dir/bench.json")
python3 - "$ops" "$(echo "$t1 - $t0" | bc)" "$(getconf CLK_TCK)" "$before" "$after" <<'EOF'
import sys
ops, seconds, tick = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
parse = lambda text: {l.split()[0]: list(map(float, l.split()[1:])) for l in text.strip().split("\n")}
before, after = parse(sys.argv[4]), parse(sys.argv[5])
done = ops * seconds
print(f"{ops:,.0f} ops/s")
for index, pid in enumerate(before):
    d = [a - b for a, b in zip(after[pid], before[pid])]
    name = f"server {index + 1}" if index < len(before) - 1 else "bench"
    print(f"{name:9} (pid {pid}): CPU {d[0] / tick * 1e6 / done:6.1f} µs/op, faults {d[1] / done:5.2f}/op, reads {d[2] / done:5.2f}/op, writes {d[3] / done:5.2f}/op")
EOF
