#!/usr/bin/env bun
/**
 * Where the time goes: runs one `pstore bench` workload against 3 servers
 * started from source under Bun's sampling profiler (--cpu-prof-md), profiles
 * this client process too, and prints each process's top functions. The full
 * Markdown profiles (hot functions, call tree) stay in the output folder.
 *
 *   bun --cpu-prof-md --cpu-prof-dir=/tmp/pstore-profile bench/profile.ts \
 *       [--workload cycle] [--clients 1] [--fsync off] [--seconds 8] [--out /tmp/pstore-profile]
 *
 * (Without the two bun flags only the servers are profiled.) For the kernel's share of the
 * servers' time too, `perf` with bench/jit_map.ts.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runPrefix, runWorkload, WORKLOADS, type WorkloadName } from "../src/bench/index.ts";
import { LocalCluster } from "../src/cli/cluster.ts";
import { PURGE_DELAY_ENV } from "../src/cli/self.ts";

const ROOT = resolve(import.meta.dir, "..");

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index === -1 ? fallback : process.argv[index + 1]!;
}

const workload = option("--workload", "cycle") as WorkloadName;
if (!WORKLOADS.includes(workload) || workload === "failover") throw new Error(`--workload: one of ${WORKLOADS.filter((w) => w !== "failover").join(", ")}`);
const clients = Number(option("--clients", workload === "contended" ? "8" : "1"));
const fsync = option("--fsync", "off") as "off" | "always" | "batch";
const seconds = Number(option("--seconds", "8"));
const out = resolve(option("--out", "/tmp/pstore-profile"));
mkdirSync(out, { recursive: true });

// A server started without it executes itself again to set it (src/cli/self.ts), which drops
// bun's profiler flags: the profile of the process that serves was never written.
process.env[PURGE_DELAY_ENV] ??= "-1";
const dataDir = mkdtempSync(join(tmpdir(), "pstore-profile-"));
const cluster = new LocalCluster({
  count: 3,
  basePort: 0,
  dataDir,
  fsync,
  command: [process.execPath, "--cpu-prof-md", `--cpu-prof-dir=${out}`, join(ROOT, "src/cli/main.ts")],
});
try {
  await cluster.start();
  const pids = cluster.pids;
  const result = await runWorkload(
    { servers: cluster.servers, cluster, prefix: runPrefix() },
    { workload, clients, size: 4096, budget: { durationMs: seconds * 1000 }, warmupMs: 500, victim: "head" },
  );
  console.log(JSON.stringify(result));
  // SIGTERM: the servers exit cleanly and write their profiles.
  await cluster.stop();
  for (const [index, pid] of pids.entries()) {
    const file = readdirSync(out).find((name) => name.includes(`.${pid}.`));
    if (!file) continue;
    const top = readFileSync(join(out, file), "utf8").split("\n").find((line) => line.startsWith("**Top 10:**"));
    console.log(`server ${index + 1} (pid ${pid}): ${top ?? "(no summary)"}\n  ${join(out, file)}`);
  }
  console.log(`client (pid ${process.pid}): its profile is written to the --cpu-prof-dir given to bun when this exits`);
} finally {
  await cluster.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
