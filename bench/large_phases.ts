#!/usr/bin/env bun
/**
 * One 64 MiB rewrite at a time, and what each process paid for it: the client's access, fill
 * and release times, and for the three servers and this client the CPU (user/system ms), the
 * page faults and the RSS during that release (from /proc). Shows the fresh memory a rewrite
 * faults in (~11 µs a page on our VM: docs/benchmarks.md) and a fresh cluster's warm-up.
 *
 *   bun bench/large_phases.ts [--rewrites 12] [--rounds 1] [--pause-ms 0] [--fsync off]
 *                             [--binary dist/pstore] [--serve-args "--checkpoint-mb 64"]
 *
 * Each round creates a 64 MiB datum, rewrites it, deletes it, then pauses.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { rssKiB } from "../src/bench/rss.ts";
import { LocalCluster } from "../src/cli/cluster.ts";
import { connect } from "../src/index.ts";

const ROOT = resolve(import.meta.dir, "..");
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : process.argv[i + 1]!;
};
const LARGE = 64 * 1024 * 1024;
/** Minor faults and user/system CPU ticks (10 ms) of `pid` so far, from one read of /proc/PID/stat. */
function counters(pid: number): { faults: number; user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { faults: Number(fields[7]), user: Number(fields[11]), system: Number(fields[12]) };
}
const rssMib = (pid: number) => Math.round((rssKiB(pid) ?? 0) / 1024);

const dataDir = mkdtempSync(join(tmpdir(), "pstore-large-"));
const cluster = new LocalCluster({
  count: 3,
  basePort: 0,
  dataDir,
  fsync: arg("--fsync", "off") as "off" | "always" | "batch",
  command: [resolve(ROOT, arg("--binary", "dist/pstore"))],
  serveArgs: arg("--serve-args", "").split(" ").filter(Boolean),
});
try {
  await cluster.start();
  const store = await connect({ servers: cluster.servers });
  const pids = [...cluster.pids.map((pid) => pid ?? 0), process.pid];
  console.log(`pids: servers ${cluster.pids.join(", ")}, client ${process.pid}`);
  for (let round = 1; round <= Number(arg("--rounds", "1")); round++) {
    const name = `large-phases-${round}`;
    await store.create(name, LARGE);
    for (let i = 0; i < Number(arg("--rewrites", "12")); i++) {
      const before = pids.map(counters);
      const t0 = performance.now();
      const view = await store.accessReadWrite(name);
      const t1 = performance.now();
      view.fill(i & 0xff);
      const t2 = performance.now();
      await store.releaseReadWrite(view);
      const t3 = performance.now();
      const after = pids.map(counters);
      const cpu = after.map((now, k) => `${(now.user - before[k]!.user) * 10}/${(now.system - before[k]!.system) * 10}`);
      const faulted = after.map((now, k) => now.faults - before[k]!.faults);
      console.log(
        `round ${round} #${i}: access ${(t1 - t0).toFixed(1)} fill ${(t2 - t1).toFixed(1)} release ${(t3 - t2).toFixed(1)} ms | ` +
          `cpu u/s ms [${cpu.join(" ")}] faults [${faulted.join(" ")}] rss MiB [${pids.map(rssMib).join(" ")}]`,
      );
    }
    await store.delete(name);
    await Bun.sleep(Number(arg("--pause-ms", "0")));
  }
  await store.close();
} finally {
  await cluster.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
